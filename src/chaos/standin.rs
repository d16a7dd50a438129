//! The stand-in faults (`tts_*`, `llm_*`, `*_tool_params`): the harness's own
//! OpenAI-compatible TTS and LLM servers, which the fleet is pointed at, switched to a fault
//! for a while.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use super::{Confirmation, FaultError};
use crate::standin::llm::{self, LlmBehaviour, LlmControl, LlmFault, LlmRecord};
use crate::standin::tts::{self, NO_ANSWER, TtsBehaviour, TtsControl, TtsFault, TtsRecord};
use crate::standin::{self as standins, Running};

/// The TTS and LLM stand-ins of one run, serving until the run's chaos plane stops.
#[derive(Debug, Clone)]
pub struct StandIns {
    pub tts: Arc<TtsControl>,
    pub llm: Arc<LlmControl>,
    pub tts_server: Running,
    pub llm_server: Running,
    /// The fault on each stand-in right now: one at a time, since a stand-in has one
    /// behaviour and a second fault would silently replace the first.
    pub tts_owner: OwnerSlot,
    pub llm_owner: OwnerSlot,
}

/// Who holds a stand-in.
pub type OwnerSlot = Arc<std::sync::Mutex<Option<String>>>;

/// A stand-in held by one fault until dropped.
#[derive(Debug)]
pub struct StandInClaim {
    slot: OwnerSlot,
}

impl StandInClaim {
    /// Takes `slot` for `who`, or says which fault holds it.
    pub fn take(slot: &OwnerSlot, who: &str, what: &str) -> Result<Self, FaultError> {
        let mut owner = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(holder) = owner.as_ref() {
            return Err(FaultError::new(
                "stand-in",
                format!(
                    "{who} would overlap {holder} on the {what} stand-in, which serves one fault at a time; move one of them"
                ),
            ));
        }
        *owner = Some(who.to_owned());
        Ok(StandInClaim {
            slot: Arc::clone(slot),
        })
    }
}

impl Drop for StandInClaim {
    fn drop(&mut self) {
        *self
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

impl StandIns {
    /// Starts both on loopback (`None`: any free port).
    pub async fn start(
        tts_listen: Option<SocketAddr>,
        llm_listen: Option<SocketAddr>,
        seed: u64,
        shutdown: CancellationToken,
    ) -> Result<StandIns, FaultError> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let bind = |address: SocketAddr, what: &'static str| async move {
            TcpListener::bind(address).await.map_err(|error| {
                FaultError::new(what, format!("cannot listen on {address}: {error}"))
            })
        };
        let tts = TtsControl::new(TtsBehaviour::default(), seed);
        let llm = LlmControl::new(LlmBehaviour::default(), seed.wrapping_add(1));
        let tts_listener = bind(tts_listen.unwrap_or(any), "tts stand-in").await?;
        let llm_listener = bind(llm_listen.unwrap_or(any), "llm stand-in").await?;
        let tts_server = tts::spawn(tts_listener, Arc::clone(&tts), shutdown.clone())
            .await
            .map_err(|error| FaultError::new("tts stand-in", error.to_string()))?;
        let llm_server = llm::spawn(llm_listener, Arc::clone(&llm), shutdown)
            .await
            .map_err(|error| FaultError::new("llm stand-in", error.to_string()))?;
        Ok(StandIns {
            tts,
            llm,
            tts_server,
            llm_server,
            tts_owner: OwnerSlot::default(),
            llm_owner: OwnerSlot::default(),
        })
    }
}

/// A fault on the TTS stand-in.
#[derive(Debug)]
pub struct TtsStandInFault {
    kind: &'static str,
    control: Arc<TtsControl>,
    records: broadcast::Receiver<TtsRecord>,
    /// Answers since injection, by status ([`NO_ANSWER`] for requests left hanging).
    by_status: BTreeMap<u16, u64>,
    faulted: u64,
    lost: u64,
    cleared: bool,
    /// Declared last: released after `Drop` has restored the stand-in.
    _claim: StandInClaim,
}

impl TtsStandInFault {
    /// Switches the stand-in to `fault` for `fraction` of requests.
    pub fn inject(
        kind: &'static str,
        control: Arc<TtsControl>,
        claim: StandInClaim,
        fault: TtsFault,
        fraction: f64,
    ) -> TtsStandInFault {
        // Subscribe first: every answer the fault decides is seen.
        let records = control.subscribe();
        let mut behaviour = control.behaviour();
        behaviour.fault = fault;
        behaviour.fraction = fraction;
        control.set(behaviour);
        TtsStandInFault {
            kind,
            control,
            records,
            by_status: BTreeMap::new(),
            faulted: 0,
            lost: 0,
            cleared: false,
            _claim: claim,
        }
    }

    fn drain(&mut self) {
        loop {
            match self.records.try_recv() {
                Ok(record) => {
                    *self.by_status.entry(record.status).or_insert(0) += 1;
                    self.faulted += u64::from(record.faulted);
                }
                Err(TryRecvError::Lagged(lost)) => self.lost += lost,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
    }

    fn answered(&self) -> String {
        let total: u64 = self.by_status.values().sum();
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, count)| match *status {
                NO_ANSWER => format!("{count} left unanswered"),
                status => format!("{count}× {status}"),
            })
            .collect();
        if total == 0 {
            "no TTS request reached the stand-in".to_owned()
        } else {
            format!(
                "{} of {total} TTS requests faulted ({})",
                self.faulted,
                statuses.join(", ")
            )
        }
    }

    /// In effect once the stand-in has answered at least one request with the fault.
    pub async fn confirm(&mut self) -> Confirmation {
        self.drain();
        if self.faulted > 0 {
            Confirmation::in_effect(format!("{} since injection", self.answered()))
        } else {
            Confirmation::not_in_effect(format!("{} since injection", self.answered()))
        }
    }

    /// Back to healthy answers.
    pub async fn clear(mut self) -> Result<String, FaultError> {
        self.restore();
        self.drain();
        Ok(format!(
            "the TTS stand-in answers normally again; while on: {}",
            self.answered()
        ))
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn restore(&mut self) {
        if !self.cleared {
            self.cleared = true;
            let mut behaviour = self.control.behaviour();
            behaviour.fault = TtsFault::None;
            behaviour.fraction = 1.0;
            self.control.set(behaviour);
        }
    }
}

impl Drop for TtsStandInFault {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A fault on the LLM stand-in. Every request it hits is passed to `on_hit` (the chaos
/// plane journals the call it hit).
#[derive(Debug)]
pub struct LlmStandInFault {
    kind: &'static str,
    control: Arc<LlmControl>,
    records: broadcast::Receiver<LlmRecord>,
    requests_at_inject: u64,
    slow: bool,
    hits: u64,
    lost: u64,
    cleared: bool,
    /// Declared last: released after `Drop` has restored the stand-in.
    _claim: StandInClaim,
}

impl LlmStandInFault {
    pub fn inject(
        kind: &'static str,
        control: Arc<LlmControl>,
        claim: StandInClaim,
        fault: LlmFault,
        fraction: f64,
        latency: std::time::Duration,
    ) -> LlmStandInFault {
        let records = control.subscribe();
        let requests_at_inject = control.requests();
        let slow = fault == LlmFault::None;
        control.set(LlmBehaviour {
            fault,
            fraction,
            latency,
        });
        LlmStandInFault {
            kind,
            control,
            records,
            requests_at_inject,
            slow,
            hits: 0,
            lost: 0,
            cleared: false,
            _claim: claim,
        }
    }

    /// The requests the fault hit since the last call (for the journal).
    pub fn take_hits(&mut self) -> Vec<LlmRecord> {
        let mut hits = Vec::new();
        loop {
            match self.records.try_recv() {
                Ok(record) => {
                    self.hits += 1;
                    hits.push(record);
                }
                Err(TryRecvError::Lagged(lost)) => {
                    self.hits += lost;
                    self.lost += lost;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        hits
    }

    fn requests_since(&self) -> u64 {
        self.control
            .requests()
            .saturating_sub(self.requests_at_inject)
    }

    /// In effect once a request was hit (a slow model: once a request was answered late).
    pub async fn confirm(&mut self) -> Confirmation {
        let _ = self.take_hits();
        let requests = self.requests_since();
        if self.slow {
            return if requests > 0 {
                Confirmation::in_effect(format!(
                    "{requests} LLM requests answered with the added latency since injection"
                ))
            } else {
                Confirmation::not_in_effect("no LLM request reached the stand-in since injection")
            };
        }
        let evidence = format!(
            "{} of {requests} LLM requests hit since injection",
            self.hits
        );
        if self.hits > 0 {
            Confirmation::in_effect(evidence)
        } else {
            Confirmation::not_in_effect(evidence)
        }
    }

    pub async fn clear(mut self) -> Result<String, FaultError> {
        self.restore();
        let _ = self.take_hits();
        Ok(format!(
            "the LLM stand-in answers normally again; while on it hit {} of {} requests",
            self.hits,
            self.requests_since()
        ))
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn restore(&mut self) {
        if !self.cleared {
            self.cleared = true;
            self.control.set(LlmBehaviour::default());
        }
    }
}

impl Drop for LlmStandInFault {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The base URL (`http://ADDR/v1`) a fleet takes for a stand-in at `address`.
pub fn base_url(address: SocketAddr) -> String {
    standins::Running { address }.base_url()
}
