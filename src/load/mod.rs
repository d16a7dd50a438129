//! The load shaper: when calls start, and the pool of calls running.
//!
//! Two models, as in any serious load tool:
//! - **stages** (closed): the number of calls in progress follows a timeline of ramps and
//!   holds. Each unit of the level is a caller slot that calls again when its call ends,
//!   while the level asks for it. A caller does not redial at once: a call holds its slot
//!   for at least [`MIN_SLOT_TIME`], and after a call that failed to connect (refused,
//!   timed out) the caller waits as [`Redial`] says, doubling from 1 s to 30 s with seeded
//!   jitter and starting over after a call that connects, so a crashed fleet meets a few
//!   callers trying now and then, not a redial storm of `connect_failed`.
//! - **arrival rate** (open): calls start on their schedule however slow the fleet is, so a
//!   slow fleet cannot slow the test down and hide its latency (coordinated omission). Above
//!   `max_concurrent` a call is dropped and counted, never delayed. Connect failures do not
//!   slow it either: the rate bounds the attempts, and a fleet that is down meets exactly
//!   the traffic the scenario describes.
//!
//! Calls are tasks on one [`TaskTracker`]; each reports to the aggregator over a channel.
//! A call that panics (a bug in the harness) is journaled as a `harness_error`, so the
//! run's verdict is `error`, and reported ended as `cancelled`: never the fleet's failure.

pub mod aggregate;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audio::utterance::Utterance;
use crate::call::{CallContext, CallEvent, CallOutcome, CallPlan, CallStep, run_call};
use crate::journal::Journal;
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
    /// Encodes the fixtures validation decoded (so this cannot fail on a file) and the
    /// synthetic pool.
    pub fn load(scenario: &Scenario, vad: &crate::audio::vad::VoiceActivity) -> Self {
        let fixtures = scenario
            .calls
            .fixtures
            .iter()
            .map(|fixture| Utterance::from_pcm(&fixture.stem(), &fixture.samples, vad))
            .collect();
        let synthetic = scenario
            .synthetic_specs()
            .into_iter()
            .enumerate()
            .map(|(i, (duration, seed))| {
                Utterance::synthetic(&format!("synthetic-{i}"), seed, duration, vad)
            })
            .collect();
        UtteranceBank {
            fixtures,
            synthetic,
        }
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
    /// How long calls in progress may go on once the run is stopped early (a signal, an
    /// abort condition, the kill switch) before they are cancelled (`--grace`).
    pub grace: Duration,
    /// Where the schedule starts: zero, or where a resumed run goes on from.
    pub resume_at: Duration,
    /// The index of the first call placed (the calls a resumed run placed before).
    pub first_index: u64,
    /// Where a call that panics is journaled (`harness_error`).
    pub journal: Journal,
}

/// `--grace` by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

impl LoadShaper {
    /// Places calls until the schedule ends or `shutdown`; then callers place no more and
    /// the calls in progress get [`GRACEFUL_STOP`] to end after the schedule, or
    /// [`LoadShaper::grace`] after `shutdown`, before they are cancelled. Dropping this
    /// future (the run hurried by a second signal) cancels them at once.
    pub async fn run(self, events: UnboundedSender<CallEvent>, shutdown: CancellationToken) {
        // Not a child of `shutdown`: a stop leaves the calls their grace.
        let cancel = CancellationToken::new();
        let _cancel_when_dropped = cancel.clone().drop_guard();
        let calls = CallPool {
            dialer: Dialer {
                scenario: Arc::clone(&self.scenario),
                bank: Arc::clone(&self.bank),
                context: Arc::clone(&self.context),
                events: events.clone(),
                cancel: cancel.clone(),
                journal: self.journal.clone(),
            },
            tracker: TaskTracker::new(),
            active: Arc::new(AtomicU64::new(0)),
            next_index: Arc::new(AtomicU64::new(self.first_index)),
            wanted: Arc::new(AtomicU64::new(0)),
            slots_started: 0,
            placing: shutdown.child_token(),
            cancel,
            events: events.clone(),
        };
        let now = Instant::now();
        let start = now.checked_sub(self.resume_at).unwrap_or(now);
        let calls = match &self.scenario.load {
            Load::Stages(_) => self.run_stages(calls, start, &shutdown).await,
            Load::Arrival(rate) => {
                let max = u64::from(rate.max_concurrent);
                self.run_arrivals(calls, start, max, &shutdown).await
            }
        };
        // Callers finish the call they are in and place no other.
        calls.placing.cancel();
        calls.tracker.close();
        tokio::select! {
            _ = calls.tracker.wait() => return,
            _ = tokio::time::sleep(GRACEFUL_STOP) => {}
            _ = shutdown.cancelled() => {
                tokio::select! {
                    _ = calls.tracker.wait() => return,
                    _ = tokio::time::sleep(self.grace) => {}
                }
            }
        }
        calls.cancel.cancel();
        calls.tracker.wait().await;
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
                    calls.wanted.store(wanted, Ordering::Relaxed);
                    while calls.active() < wanted {
                        calls.start_caller(self.scenario.seed);
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
            if offset < self.resume_at {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return calls,
                _ = tokio::time::sleep_until(start + offset) => {}
            }
            if calls.active() >= max_concurrent {
                let _ = calls.events.send(CallEvent::Dropped);
                calls.next_index.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            calls.start_arrival();
        }
        calls
    }
}

/// The least time one call holds a slot of the closed model: a call that ends at once (a
/// fleet hanging up on connect) does not make its caller call again at once.
pub const MIN_SLOT_TIME: Duration = Duration::from_secs(1);

/// The longest a caller of the closed model waits before calling a fleet that keeps
/// failing to connect.
pub const MAX_REDIAL_PAUSE: Duration = Duration::from_secs(30);

/// When a caller of the closed model calls again. After a call that failed to connect the
/// pause doubles with each failure in a row, from [`MIN_SLOT_TIME`] up to
/// [`MAX_REDIAL_PAUSE`], stretched by up to half at random so callers that failed together
/// do not redial together; a call that connected starts it over. The randomness comes from
/// the scenario's seed and the slot's number, so a run redials the same way every time.
#[derive(Debug)]
pub struct Redial {
    /// Calls in a row that failed to connect.
    failures: u32,
    rng: ChaCha8Rng,
}

impl Redial {
    /// Keeps this generator apart from the scenario's own streams (schedule.rs keys its
    /// streams by small purpose numbers in the same place).
    const PURPOSE: u64 = u64::from_le_bytes(*b"redial\0\0");

    pub fn new(seed: u64, slot: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&Self::PURPOSE.to_le_bytes());
        key[16..24].copy_from_slice(&slot.to_le_bytes());
        Redial {
            failures: 0,
            rng: ChaCha8Rng::from_seed(key),
        }
    }

    /// How long to wait, from the end of a call that ended as `outcome` after `took`,
    /// before the next call.
    pub fn pause(&mut self, outcome: CallOutcome, took: Duration) -> Duration {
        if outcome != CallOutcome::ConnectFailed {
            self.failures = 0;
            return MIN_SLOT_TIME.saturating_sub(took);
        }
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        let step = MIN_SLOT_TIME
            .saturating_mul(1 << doublings)
            .min(MAX_REDIAL_PAUSE);
        let stretch = self.rng.random_range(1.0..1.5);
        step.mul_f64(stretch).min(MAX_REDIAL_PAUSE)
    }
}

/// Places one call at a time: what every call of the run needs.
#[derive(Debug, Clone)]
struct Dialer {
    scenario: Arc<Scenario>,
    bank: Arc<UtteranceBank>,
    context: Arc<CallContext>,
    events: UnboundedSender<CallEvent>,
    /// Cancels calls still running after the graceful stop.
    cancel: CancellationToken,
    journal: Journal,
}

impl Dialer {
    /// Plans and places call `index`, as [`unless_panicked`] says.
    async fn call(self, index: u64) -> CallOutcome {
        let Dialer {
            scenario,
            bank,
            context,
            events,
            cancel,
            journal,
        } = self;
        let call = async {
            let plan = bank.plan_call(&scenario, index);
            run_call(context, plan, events.clone(), cancel).await
        };
        unless_panicked(call, index, &events, &journal).await
    }
}

/// Runs call `index`. A panic in it is a bug in the harness, not the fleet's doing: it is
/// journaled as a `harness_error` (task `call N`), which makes the run's verdict `error`,
/// and the call is reported ended as `cancelled`, outside the success rate.
async fn unless_panicked(
    call: impl Future<Output = CallOutcome>,
    index: u64,
    events: &UnboundedSender<CallEvent>,
    journal: &Journal,
) -> CallOutcome {
    let started = Instant::now();
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let error = journal.task_panicked(&format!("call {index}"), &*panic);
            let _ = events.send(CallEvent::Ended {
                outcome: CallOutcome::Cancelled,
                duration: started.elapsed(),
                detail: Some(format!("harness error: {error}")),
                close: None,
            });
            CallOutcome::Cancelled
        }
    }
}

/// The calls in progress.
#[derive(Debug)]
struct CallPool {
    dialer: Dialer,
    tracker: TaskTracker,
    /// Calls in progress (open model) or caller slots (closed model, a slot counting while
    /// its caller waits to call again).
    active: Arc<AtomicU64>,
    next_index: Arc<AtomicU64>,
    /// The level the closed model asks for now.
    wanted: Arc<AtomicU64>,
    /// Caller slots started so far: each one's number keys its [`Redial`] jitter.
    slots_started: u64,
    /// Cancelled when the load timeline ends: callers place no more calls.
    placing: CancellationToken,
    /// Cancels calls still running after the graceful stop.
    cancel: CancellationToken,
    events: UnboundedSender<CallEvent>,
}

impl CallPool {
    fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// One call of the open model, on its schedule.
    fn start_arrival(&mut self) {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        // Released however the call ends.
        let slot = ActiveSlot::take(&self.active);
        let call = self.dialer.clone().call(index);
        self.tracker.spawn(async move {
            call.await;
            drop(slot);
        });
    }

    /// One caller slot of the closed model: it calls until the level no longer wants it or
    /// the load ends.
    fn start_caller(&mut self, seed: u64) {
        let slot = ActiveSlot::take(&self.active);
        let redial = Redial::new(seed, self.slots_started);
        self.slots_started += 1;
        let (next_index, dialer) = (Arc::clone(&self.next_index), self.dialer.clone());
        let place = move || {
            let index = next_index.fetch_add(1, Ordering::Relaxed);
            dialer.clone().call(index)
        };
        let caller = Caller {
            slot,
            redial,
            wanted: Arc::clone(&self.wanted),
            placing: self.placing.clone(),
            cancel: self.cancel.clone(),
        };
        self.tracker.spawn(caller.run(place));
    }
}

/// A caller slot of the closed model between its calls.
#[derive(Debug)]
struct Caller {
    slot: ActiveSlot,
    redial: Redial,
    wanted: Arc<AtomicU64>,
    placing: CancellationToken,
    cancel: CancellationToken,
}

impl Caller {
    /// Places calls with `place`, pausing between them as [`Redial`] says, until the level
    /// falls below the slots running (this slot retires) or the load ends.
    async fn run<F, Call>(mut self, mut place: F)
    where
        F: FnMut() -> Call,
        Call: Future<Output = CallOutcome>,
    {
        loop {
            let started = Instant::now();
            let outcome = place().await;
            let pause = self.redial.pause(outcome, started.elapsed());
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.placing.cancelled() => return,
                () = self.cancel.cancelled() => return,
            }
            if self.placing.is_cancelled() || self.slot.retire_above(&self.wanted) {
                return;
            }
        }
    }
}

/// One unit of the pool's count: a running call, or a caller slot.
#[derive(Debug)]
struct ActiveSlot {
    active: Arc<AtomicU64>,
    /// Already taken off the count by [`ActiveSlot::retire_above`].
    retired: bool,
}

impl ActiveSlot {
    fn take(active: &Arc<AtomicU64>) -> Self {
        active.fetch_add(1, Ordering::Relaxed);
        ActiveSlot {
            active: Arc::clone(active),
            retired: false,
        }
    }

    /// Takes this slot off the count if there are more than `wanted`; says whether it did.
    /// One atomic step, so slots ending together never retire below the level.
    fn retire_above(&mut self, wanted: &AtomicU64) -> bool {
        let wanted = wanted.load(Ordering::Relaxed);
        self.retired = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |active| {
                (active > wanted).then(|| active - 1)
            })
            .is_ok();
        self.retired
    }
}

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        if !self.retired {
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const FAILED: CallOutcome = CallOutcome::ConnectFailed;

    #[test]
    fn redial_pauses_double_to_thirty_seconds_with_seeded_jitter() {
        let mut redial = Redial::new(7, 0);
        let pauses: Vec<Duration> = (0..8)
            .map(|_| redial.pause(FAILED, Duration::ZERO))
            .collect();
        for (pause, step_s) in pauses.iter().zip([1, 2, 4, 8, 16, 30, 30, 30]) {
            let step = Duration::from_secs(step_s);
            assert!(
                *pause >= step && *pause < step.mul_f64(1.5).min(MAX_REDIAL_PAUSE + MS),
                "{pauses:?}"
            );
        }
        // The same seed and slot redial the same way; another slot does not.
        let mut again = Redial::new(7, 0);
        let mut other = Redial::new(7, 1);
        assert_eq!(again.pause(FAILED, Duration::ZERO), pauses[0]);
        assert_ne!(other.pause(FAILED, Duration::ZERO), pauses[0]);
        // A call that connects starts it over; it holds its slot for MIN_SLOT_TIME.
        let after_call = redial.pause(CallOutcome::FleetHungUp, Duration::from_millis(300));
        assert_eq!(after_call, Duration::from_millis(700));
        assert_eq!(
            redial.pause(CallOutcome::Completed, Duration::from_secs(20)),
            Duration::ZERO
        );
        let restarted = redial.pause(FAILED, Duration::ZERO);
        assert!(restarted < Duration::from_millis(1500), "{restarted:?}");
    }

    const MS: Duration = Duration::from_millis(1);

    /// A call task that panics (a bug in the harness) is journaled as a `harness_error`
    /// naming the call, so the run is graded `error`, and the call is reported ended as
    /// `cancelled` (outside the success rate): not a fleet `fail`, not a slot silently
    /// given back.
    #[tokio::test]
    async fn a_call_that_panics_is_a_harness_error_not_a_failed_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = Journal::create(&path, Instant::now()).unwrap();
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let call = async {
            tokio::task::yield_now().await;
            panic!("frame index out of range")
        };
        let outcome = unless_panicked(call, 7, &events, &journal).await;
        assert_eq!(outcome, CallOutcome::Cancelled);
        let Ok(CallEvent::Ended {
            outcome, detail, ..
        }) = received.try_recv()
        else {
            panic!("the call is reported ended");
        };
        assert_eq!(outcome, CallOutcome::Cancelled);
        assert!(detail.unwrap().contains("frame index out of range"));

        // A call that ends is left as it ended, and journals nothing.
        let fine = unless_panicked(async { CallOutcome::TurnTimeout }, 8, &events, &journal);
        assert_eq!(fine.await, CallOutcome::TurnTimeout);
        assert!(received.try_recv().is_err());

        journal.sync();
        let records: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["event"], "harness_error");
        assert_eq!(records[0]["task"], "call 7");
        assert_eq!(records[0]["error"], "it panicked: frame index out of range");
    }

    /// A caller whose calls end as `outcomes` says (the last one repeating), each after
    /// 5 ms; returns when each call was placed, relative to `start`.
    fn caller(
        outcomes: Vec<CallOutcome>,
        active: &Arc<AtomicU64>,
        wanted: &Arc<AtomicU64>,
        placing: &CancellationToken,
        slot: u64,
    ) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<Duration>>>) {
        let start = Instant::now();
        let placed = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&placed);
        let place = move || {
            let mut placed = log.lock().unwrap();
            let outcome = outcomes[placed.len().min(outcomes.len() - 1)];
            placed.push(start.elapsed());
            async move {
                tokio::time::sleep(5 * MS).await;
                outcome
            }
        };
        let caller = Caller {
            slot: ActiveSlot::take(active),
            redial: Redial::new(1, slot),
            wanted: Arc::clone(wanted),
            placing: placing.clone(),
            cancel: CancellationToken::new(),
        };
        (tokio::spawn(caller.run(place)), placed)
    }

    /// Gaps between consecutive calls, minus each call's own 5 ms.
    fn gaps(placed: &[Duration]) -> Vec<Duration> {
        placed.windows(2).map(|w| w[1] - w[0] - 5 * MS).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_backs_off_a_fleet_that_refuses_and_starts_over_once_it_connects() {
        let active = Arc::new(AtomicU64::new(0));
        let wanted = Arc::new(AtomicU64::new(1));
        let placing = CancellationToken::new();
        let (refused, placed) = caller(vec![FAILED], &active, &wanted, &placing, 0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let times = placed.lock().unwrap().clone();
        // 1 + 2 + 4 + 8 + 16 (each stretched by up to half) and then the 30 s cap: six calls
        // in a minute where an immediate redial every second would have made sixty.
        assert_eq!(times.len(), 6, "{times:?}");
        for (gap, step_s) in gaps(&times).iter().zip([1, 2, 4, 8, 16]) {
            let step = Duration::from_secs(step_s);
            assert!(*gap >= step && *gap < step.mul_f64(1.5), "{times:?}");
        }
        placing.cancel();
        refused.await.unwrap();
        assert_eq!(active.load(Ordering::Relaxed), 0, "the slot is given back");

        let placing = CancellationToken::new();
        let outcomes = vec![FAILED, FAILED, FAILED, CallOutcome::Completed, FAILED];
        let (recovering, placed) = caller(outcomes, &active, &wanted, &placing, 1);
        tokio::time::sleep(Duration::from_secs(15)).await;
        placing.cancel();
        recovering.await.unwrap();
        let gaps = gaps(&placed.lock().unwrap());
        assert!(gaps.len() >= 5, "{gaps:?}");
        // Failed three times (1, 2, 4 s), then connected: one MIN_SLOT_TIME from the start
        // of that call, then the next failure waits 1 s again, not 8.
        assert!(gaps[2] >= Duration::from_secs(4), "{gaps:?}");
        assert_eq!(gaps[3], MIN_SLOT_TIME - 5 * MS, "{gaps:?}");
        assert!(gaps[4] < Duration::from_millis(1500), "{gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn callers_retire_when_the_level_falls_and_never_below_it() {
        let active = Arc::new(AtomicU64::new(0));
        let wanted = Arc::new(AtomicU64::new(2));
        let placing = CancellationToken::new();
        let completed = vec![CallOutcome::Completed];
        let (first, _) = caller(completed.clone(), &active, &wanted, &placing, 0);
        let (second, _) = caller(completed, &active, &wanted, &placing, 1);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(active.load(Ordering::Relaxed), 2);
        wanted.store(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(active.load(Ordering::Relaxed), 1, "exactly one retired");
        assert!(first.is_finished() != second.is_finished());
        placing.cancel();
        let _ = tokio::join!(first, second);
        assert_eq!(active.load(Ordering::Relaxed), 0);
    }
}
