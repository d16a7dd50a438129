//! The stand-in faults (`tts_*`, `llm_*`, `*_tool_params`): the harness's own
//! OpenAI-compatible TTS and LLM servers, which the fleet is pointed at, switched to a fault
//! for a while.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Confirmation, FaultError};
use crate::standin::control::{Control, Counts, StandIn};
use crate::standin::llm::{self, LlmBehaviour, LlmControl, LlmFault, LlmRecord, LlmStandIn};
use crate::standin::tts::{
    self, NO_ANSWER, TtsBehaviour, TtsControl, TtsCounts, TtsFault, TtsStandIn,
};
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

/// A stand-in switched to a fault and held until it is switched back: the stand-in's counts
/// when the fault was switched on and off, exact however many requests came. Dropped, it
/// switches the stand-in back first.
#[derive(Debug)]
struct Switched<K: StandIn> {
    control: Arc<Control<K>>,
    /// The stand-in's counts when the fault was switched on.
    at_inject: K::Counts,
    /// The same when it was switched off.
    at_clear: Option<K::Counts>,
    /// The behaviour without the fault, from the one of that moment.
    healthy: fn(K::Behaviour) -> K::Behaviour,
    /// Declared last: released after `Drop` has restored the stand-in.
    _claim: StandInClaim,
}

impl<K: StandIn> Switched<K> {
    /// Switches the stand-in held by `claim` to `behaviour`.
    fn on(
        control: Arc<Control<K>>,
        claim: StandInClaim,
        behaviour: K::Behaviour,
        healthy: fn(K::Behaviour) -> K::Behaviour,
    ) -> Self {
        let at_inject = control.switch(behaviour);
        Switched {
            control,
            at_inject,
            at_clear: None,
            healthy,
            _claim: claim,
        }
    }

    /// Requests since injection (until the clear once cleared).
    fn since(&self) -> K::Counts {
        self.at_clear
            .clone()
            .unwrap_or_else(|| self.control.counts())
            .since(&self.at_inject)
    }

    /// Switches the stand-in back, once.
    fn restore(&mut self) {
        if self.at_clear.is_none() {
            let healthy = (self.healthy)(self.control.behaviour());
            self.at_clear = Some(self.control.switch(healthy));
        }
    }
}

impl<K: StandIn> Drop for Switched<K> {
    fn drop(&mut self) {
        self.restore();
    }
}

/// In effect once the fault hit a request.
fn hit_once(faulted: u64, evidence: String) -> Confirmation {
    if faulted > 0 {
        Confirmation::in_effect(evidence)
    } else {
        Confirmation::not_in_effect(evidence)
    }
}

/// A fault on the TTS stand-in. Its counts are the stand-in's own, taken when it switched
/// the fault on and off: exact, however many requests came.
#[derive(Debug)]
pub struct TtsStandInFault {
    kind: &'static str,
    switched: Switched<TtsStandIn>,
}

impl TtsStandInFault {
    /// Injects a scenario's `tts_*` entry `name` into the TTS stand-in, which it holds
    /// until cleared: a second fault on it is refused.
    pub fn inject_spec(
        standins: &StandIns,
        kind: &'static str,
        name: &str,
        fault: &TtsFault,
        fraction: f64,
    ) -> Result<TtsStandInFault, FaultError> {
        let claim = StandInClaim::take(&standins.tts_owner, name, "TTS")?;
        let control = Arc::clone(&standins.tts);
        Ok(TtsStandInFault::inject(
            kind,
            control,
            claim,
            fault.clone(),
            fraction,
        ))
    }

    /// Switches the stand-in to `fault` for `fraction` of requests.
    pub fn inject(
        kind: &'static str,
        control: Arc<TtsControl>,
        claim: StandInClaim,
        fault: TtsFault,
        fraction: f64,
    ) -> TtsStandInFault {
        let mut behaviour = control.behaviour();
        behaviour.fault = fault;
        behaviour.fraction = fraction;
        let healthy = |behaviour| TtsBehaviour {
            fault: TtsFault::None,
            fraction: 1.0,
            ..behaviour
        };
        TtsStandInFault {
            kind,
            switched: Switched::on(control, claim, behaviour, healthy),
        }
    }

    /// In effect once the stand-in has answered at least one request with the fault.
    pub async fn confirm(&mut self) -> Confirmation {
        let since = self.switched.since();
        hit_once(
            since.faulted,
            format!("{} since injection", answered(&since)),
        )
    }

    /// Back to healthy answers.
    pub async fn clear(mut self) -> Result<String, FaultError> {
        self.switched.restore();
        Ok(format!(
            "the TTS stand-in answers normally again; while on: {}",
            answered(&self.switched.since())
        ))
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// "N of M TTS requests faulted (…)", for the journal.
fn answered(counts: &TtsCounts) -> String {
    if counts.requests == 0 {
        return "no TTS request reached the stand-in".to_owned();
    }
    let statuses: Vec<String> = counts
        .by_status
        .iter()
        .map(|(status, count)| match *status {
            NO_ANSWER => format!("{count} left unanswered"),
            status => format!("{count}× {status}"),
        })
        .collect();
    format!(
        "{} of {} TTS requests faulted ({})",
        counts.faulted,
        counts.requests,
        statuses.join(", ")
    )
}

/// A fault on the LLM stand-in. The requests it hits are kept by the stand-in for the
/// chaos plane to journal ([`LlmStandInFault::take_hits`]); its counts are the stand-in's
/// own, taken when it switched the fault on and off.
#[derive(Debug)]
pub struct LlmStandInFault {
    kind: &'static str,
    slow: bool,
    switched: Switched<LlmStandIn>,
}

impl LlmStandInFault {
    /// Injects a scenario's `llm_*` or `*_tool_params` entry `name` into the LLM stand-in,
    /// which it holds until cleared: a second fault on it is refused.
    pub fn inject_spec(
        standins: &StandIns,
        kind: &'static str,
        name: &str,
        fault: &LlmFault,
        fraction: f64,
        latency: std::time::Duration,
    ) -> Result<LlmStandInFault, FaultError> {
        let claim = StandInClaim::take(&standins.llm_owner, name, "LLM")?;
        let control = Arc::clone(&standins.llm);
        Ok(LlmStandInFault::inject(
            kind,
            control,
            claim,
            fault.clone(),
            fraction,
            latency,
        ))
    }

    pub fn inject(
        kind: &'static str,
        control: Arc<LlmControl>,
        claim: StandInClaim,
        fault: LlmFault,
        fraction: f64,
        latency: std::time::Duration,
    ) -> LlmStandInFault {
        let slow = fault == LlmFault::None;
        let behaviour = LlmBehaviour {
            fault,
            fraction,
            latency,
        };
        LlmStandInFault {
            kind,
            slow,
            switched: Switched::on(control, claim, behaviour, |_| LlmBehaviour::default()),
        }
    }

    /// The requests the fault hit since the last call (for the journal; the first
    /// [`llm::KEPT_HITS`] of them).
    pub fn take_hits(&mut self) -> Vec<LlmRecord> {
        self.switched.control.take_hits()
    }

    /// In effect once a request was hit (a slow model: once a request was answered late).
    pub async fn confirm(&mut self) -> Confirmation {
        let since = self.switched.since();
        if self.slow {
            return if since.requests > 0 {
                Confirmation::in_effect(format!(
                    "{} LLM requests answered with the added latency since injection",
                    since.requests
                ))
            } else {
                Confirmation::not_in_effect("no LLM request reached the stand-in since injection")
            };
        }
        hit_once(
            since.faulted,
            format!(
                "{} of {} LLM requests hit since injection",
                since.faulted, since.requests
            ),
        )
    }

    pub async fn clear(mut self) -> Result<String, FaultError> {
        self.switched.restore();
        let since = self.switched.since();
        Ok(format!(
            "the LLM stand-in answers normally again; while on it hit {} of {} requests",
            since.faulted, since.requests
        ))
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// The base URL (`http://ADDR/v1`) a fleet takes for a stand-in at `address`.
pub fn base_url(address: SocketAddr) -> String {
    standins::Running { address }.base_url()
}
