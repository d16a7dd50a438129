//! The load shaper: when calls start, and the pool of calls running.
//!
//! Two models, as in any serious load tool:
//! - **stages** (closed): the number of calls in progress follows a timeline of ramps and
//!   holds; a call that ends is replaced while the level asks for it.
//! - **arrival rate** (open): calls start on their schedule however slow the fleet is, so a
//!   slow fleet cannot slow the test down and hide its latency (coordinated omission). Above
//!   `max_concurrent` a call is dropped and counted, never delayed.
//!
//! Calls are tasks on one [`TaskTracker`]; each reports to the aggregator over a channel.

pub mod aggregate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audio::AudioError;
use crate::audio::utterance::Utterance;
use crate::call::{CallContext, CallEvent, CallPlan, CallStep, run_call};
use crate::scenario::{Load, PlannedStep, Scenario, UtteranceSource};

/// How often the closed model compares the level asked for with the calls running.
const STAGE_TICK: Duration = Duration::from_millis(50);

/// After the load timeline ends, calls in progress get this long to finish their script
/// before they are cancelled (a call cut short is `cancelled`, not failed).
pub const GRACEFUL_STOP: Duration = Duration::from_secs(30);

/// Every utterance a run can play, loaded once and shared by all calls.
#[derive(Debug, Clone)]
pub struct UtteranceBank {
    pub fixtures: Vec<Utterance>,
    pub synthetic: Vec<Utterance>,
}

impl UtteranceBank {
    pub fn load(
        scenario: &Scenario,
        vad: &crate::audio::vad::VoiceActivity,
    ) -> Result<Self, AudioError> {
        let fixtures = scenario
            .calls
            .fixtures
            .iter()
            .map(|path| Utterance::from_wav(path, vad))
            .collect::<Result<Vec<_>, _>>()?;
        let synthetic = scenario
            .synthetic_specs()
            .into_iter()
            .enumerate()
            .map(|(i, (duration, seed))| {
                Utterance::synthetic(&format!("synthetic-{i}"), seed, duration, vad)
            })
            .collect();
        Ok(UtteranceBank {
            fixtures,
            synthetic,
        })
    }

    fn utterance(&self, source: &UtteranceSource) -> Utterance {
        match *source {
            UtteranceSource::Fixture(index) => self.fixtures[index].clone(),
            UtteranceSource::Synthetic(index) => self.synthetic[index].clone(),
        }
    }

    /// The plan of call `index`: its script and audio, from the scenario seed.
    pub fn plan_call(&self, scenario: &Scenario, index: u64) -> CallPlan {
        let choice = scenario.choose_call(index);
        let steps = choice
            .steps
            .iter()
            .map(|step| match step {
                PlannedStep::Say { utterance, listen } => CallStep::Say {
                    utterance: self.utterance(utterance),
                    listen: *listen,
                },
                PlannedStep::Dtmf { digits, listen } => CallStep::Dtmf {
                    digits: digits.clone(),
                    listen: *listen,
                },
                PlannedStep::Pause(pause) => CallStep::Pause(*pause),
                PlannedStep::Hangup => CallStep::Hangup,
            })
            .collect();
        CallPlan { index, steps }
    }
}

/// Starts calls on the scenario's schedule until `run_for` has passed, then waits for the
/// calls in progress (cancelling them after [`GRACEFUL_STOP`]).
#[derive(Debug)]
pub struct LoadShaper {
    pub scenario: Arc<Scenario>,
    pub bank: Arc<UtteranceBank>,
    pub context: Arc<CallContext>,
    /// How long calls keep starting: the load timeline, or the `--duration` override.
    pub run_for: Duration,
}

impl LoadShaper {
    pub async fn run(self, events: UnboundedSender<CallEvent>, shutdown: CancellationToken) {
        let calls = CallPool {
            tracker: TaskTracker::new(),
            active: Arc::new(AtomicU64::new(0)),
            next_index: 0,
            cancel: shutdown.child_token(),
            events: events.clone(),
        };
        let start = Instant::now();
        let calls = match &self.scenario.load {
            Load::Stages(_) => self.run_stages(calls, start, &shutdown).await,
            Load::Arrival(rate) => {
                let max = u64::from(rate.max_concurrent);
                self.run_arrivals(calls, start, max, &shutdown).await
            }
        };
        calls.tracker.close();
        tokio::select! {
            _ = calls.tracker.wait() => {}
            _ = tokio::time::sleep(GRACEFUL_STOP) => {
                calls.cancel.cancel();
                calls.tracker.wait().await;
            }
            _ = shutdown.cancelled() => {
                calls.cancel.cancel();
                calls.tracker.wait().await;
            }
        }
    }

    async fn run_stages(
        &self,
        mut calls: CallPool,
        start: Instant,
        shutdown: &CancellationToken,
    ) -> CallPool {
        let load = &self.scenario.load;
        let timeline = load.duration();
        let mut ticker = tokio::time::interval(STAGE_TICK);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return calls,
                now = ticker.tick() => {
                    let elapsed = now.saturating_duration_since(start);
                    if elapsed >= self.run_for {
                        return calls;
                    }
                    // Past the timeline (a longer --duration), the last level holds.
                    let at = if elapsed >= timeline {
                        timeline.saturating_sub(Duration::from_millis(1))
                    } else {
                        elapsed
                    };
                    let wanted = u64::from(load.concurrency_at(at));
                    while calls.active() < wanted {
                        calls.start(self);
                    }
                }
            }
        }
    }

    async fn run_arrivals(
        &self,
        mut calls: CallPool,
        start: Instant,
        max_concurrent: u64,
        shutdown: &CancellationToken,
    ) -> CallPool {
        for offset in self.scenario.arrival_offsets() {
            if offset >= self.run_for {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return calls,
                _ = tokio::time::sleep_until(start + offset) => {}
            }
            if calls.active() >= max_concurrent {
                let _ = calls.events.send(CallEvent::Dropped);
                calls.next_index += 1;
                continue;
            }
            calls.start(self);
        }
        calls
    }
}

/// The least time one call holds a slot of the closed model.
const MIN_SLOT_TIME: Duration = Duration::from_secs(1);

/// The calls in progress.
#[derive(Debug)]
struct CallPool {
    tracker: TaskTracker,
    active: Arc<AtomicU64>,
    next_index: u64,
    /// Cancels calls still running after the graceful stop.
    cancel: CancellationToken,
    events: UnboundedSender<CallEvent>,
}

impl CallPool {
    fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    fn start(&mut self, shaper: &LoadShaper) {
        let plan = shaper.bank.plan_call(&shaper.scenario, self.next_index);
        self.next_index += 1;
        let active = Arc::clone(&self.active);
        active.fetch_add(1, Ordering::Relaxed);
        let context = Arc::clone(&shaper.context);
        let cancel = self.cancel.clone();
        let events = self.events.clone();
        self.tracker.spawn(async move {
            // Released however the call ends, a panic included, so a broken call never
            // holds a slot of the closed model.
            let _slot = ActiveSlot(active);
            let started = Instant::now();
            run_call(context, plan, events, cancel.clone()).await;
            // A call that ended at once (a fleet refusing connections) keeps its slot for a
            // moment, as a caller who cannot get through waits before calling again:
            // otherwise the closed model would hammer a dead fleet with thousands of calls.
            tokio::select! {
                () = tokio::time::sleep_until(started + MIN_SLOT_TIME) => {}
                () = cancel.cancelled() => {}
            }
        });
    }
}

/// One running call in the pool's count.
#[derive(Debug)]
struct ActiveSlot(Arc<AtomicU64>);

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
