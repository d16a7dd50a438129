//! The workers that serve agent turns, and the healer that restarts the ones that go
//! silent.
//!
//! Each worker takes jobs from one shared queue and pings its row in `health_checks` on a
//! heartbeat, also while it works on a long turn. The healer is a timer and two queries:
//! every `heal_interval` it asks the database for workers whose last ping is older than
//! `stall_after`, and for each one that really went quiet (its in-memory heartbeat is old
//! too: a worker whose pings fail because the database is down is not silent) it aborts the
//! worker, starts a new generation in its slot, puts the job it held back on the queue, and
//! writes the intervention to `events`. A job that has been retried [`MAX_JOB_RETRIES`]
//! times is abandoned instead of looping, and so many restarts in a minute escalate:
//! both raise `WorkerStalled`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::agent::{self, Job, TurnOutcome};
use super::alerts::AlertName;
use super::db::now_ms;
use super::{Bug, Fleet};

/// Retries of one job before the healer gives up on it.
pub const MAX_JOB_RETRIES: u32 = 2;
/// Restarts within [`RESTART_WINDOW`] that escalate to an alert.
pub const ESCALATE_RESTARTS: usize = 3;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// One worker's place: the healer replaces the task in it, the slot stays.
#[derive(Debug)]
pub struct WorkerSlot {
    pub id: u32,
    generation: AtomicU32,
    /// Last heartbeat of the current generation (in memory; the database has its own copy).
    heartbeat: Mutex<Instant>,
    /// The job the worker holds, so the healer can retry it.
    current: Mutex<Option<Job>>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Jobs served by the current generation (the silent-stall bug counts these).
    served: AtomicU32,
    ping_in_flight: Arc<AtomicBool>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl WorkerSlot {
    pub fn new(id: u32) -> Arc<WorkerSlot> {
        Arc::new(WorkerSlot {
            id,
            generation: AtomicU32::new(0),
            heartbeat: Mutex::new(Instant::now()),
            current: Mutex::new(None),
            task: Mutex::new(None),
            served: AtomicU32::new(0),
            ping_in_flight: Arc::new(AtomicBool::new(false)),
        })
    }

    /// How long since the worker last showed a sign of life.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*lock(&self.heartbeat))
    }
}

/// How often a worker pings.
fn heartbeat_interval(fleet: &Fleet) -> Duration {
    (fleet.options.stall_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Starts (or restarts) the worker in `slot` with a new generation.
pub fn start(fleet: &Arc<Fleet>, slot: &Arc<WorkerSlot>) {
    let generation = slot.generation.fetch_add(1, Ordering::SeqCst) + 1;
    slot.served.store(0, Ordering::SeqCst);
    *lock(&slot.heartbeat) = Instant::now();
    let task = tokio::spawn(work(Arc::clone(fleet), Arc::clone(slot), generation));
    if let Some(old) = lock(&slot.task).replace(task) {
        old.abort();
    }
}

async fn work(fleet: Arc<Fleet>, slot: Arc<WorkerSlot>, generation: u32) {
    let mut tick = tokio::time::interval(heartbeat_interval(&fleet));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let job = tokio::select! {
            _ = fleet.shutdown.cancelled() => return,
            _ = tick.tick() => { heartbeat(&fleet, &slot, generation); continue; }
            job = fleet.queue.recv() => match job { Ok(job) => job, Err(_) => return },
        };
        if job.cancelled.is_cancelled() {
            continue;
        }
        *lock(&slot.current) = Some(job.clone());
        let stall_after = fleet.options.stall_after_calls;
        if fleet.options.has(Bug::SilentStall) && slot.served.load(Ordering::SeqCst) >= stall_after
        {
            // The bug: hold the job, stop pinging, say nothing. Only a restart ends this.
            fleet.shutdown.cancelled().await;
            return;
        }
        let turn = agent::run_turn(&fleet, &job, slot.id);
        tokio::pin!(turn);
        let outcome = loop {
            tokio::select! {
                outcome = &mut turn => break outcome,
                _ = tick.tick() => heartbeat(&fleet, &slot, generation),
            }
        };
        lock(&slot.current).take();
        slot.served.fetch_add(1, Ordering::SeqCst);
        let _ = job.reply.send(outcome);
    }
}

/// Marks the worker alive and pings its `health_checks` row (one ping in flight at most, so
/// a slow database does not pile them up).
fn heartbeat(fleet: &Arc<Fleet>, slot: &Arc<WorkerSlot>, generation: u32) {
    *lock(&slot.heartbeat) = Instant::now();
    if slot.ping_in_flight.swap(true, Ordering::SeqCst) {
        return;
    }
    let fleet = Arc::clone(fleet);
    let in_flight = Arc::clone(&slot.ping_in_flight);
    let worker = slot.id;
    tokio::spawn(async move {
        if let Err(error) = fleet.db.ping_worker(worker, generation).await {
            fleet.note_db_error("ping_worker", &error);
        }
        in_flight.store(false, Ordering::SeqCst);
    });
}

/// The healer's loop; with the `no-healer` bug it runs but never acts.
pub async fn heal(fleet: Arc<Fleet>) {
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    let mut tick = tokio::time::interval(fleet.options.heal_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_round = Instant::now();
    loop {
        tokio::select! {
            _ = fleet.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if fleet.options.has(Bug::NoHealer) {
            continue;
        }
        let stall_after = fleet.options.stall_after;
        // A round this late means the whole process stood still (SIGSTOP, a paused VM, a
        // starved host): every worker looks silent and none is. Give them a round to ping
        // before judging, rather than restarting them all at once.
        let round = Instant::now();
        let since_last = round.duration_since(last_round);
        last_round = round;
        if since_last > fleet.options.heal_interval + stall_after {
            continue;
        }
        let cutoff = now_ms() - stall_after.as_millis() as i64;
        let silent = match fleet.db.silent_workers(cutoff).await {
            Ok(silent) => silent,
            Err(error) => {
                fleet.note_db_error("silent_workers", &error);
                continue;
            }
        };
        let now = Instant::now();
        for row in silent {
            let Some(slot) = fleet.workers.get(row.worker as usize) else {
                continue;
            };
            let quiet = slot.silent_for(now);
            if quiet < stall_after {
                continue;
            }
            restart(&fleet, slot, quiet, &mut restarts).await;
        }
    }
}

async fn restart(
    fleet: &Arc<Fleet>,
    slot: &Arc<WorkerSlot>,
    quiet: Duration,
    restarts: &mut VecDeque<Instant>,
) {
    let job = lock(&slot.current).take();
    let old_generation = slot.generation.load(Ordering::SeqCst);
    start(fleet, slot);
    fleet
        .metrics
        .healer_restarts_total
        .fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    restarts.push_back(now);
    while restarts
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) > RESTART_WINDOW)
    {
        restarts.pop_front();
    }
    let (what, call_sid) = match job {
        None => ("no job held".to_string(), None),
        Some(mut job) => {
            job.attempts += 1;
            let call_sid = job.call_sid.clone();
            if job.attempts > MAX_JOB_RETRIES {
                let turn = job.turn;
                let _ = job.reply.send(TurnOutcome::Failed {
                    turn,
                    reason: "abandoned_by_healer",
                });
                fleet.dead_letters.post(
                    &call_sid,
                    turn,
                    "abandoned_by_healer",
                    &format!("its worker stalled {} times", job.attempts),
                );
                escalate(
                    fleet,
                    &format!(
                        "gave up on turn {turn} of {call_sid} after {MAX_JOB_RETRIES} retries"
                    ),
                )
                .await;
                (format!("turn {turn} abandoned"), Some(call_sid))
            } else {
                let what = format!("turn {} retried (attempt {})", job.turn, job.attempts + 1);
                if !job.cancelled.is_cancelled() {
                    let _ = fleet.queue_sender.send(job).await;
                }
                (what, Some(call_sid))
            }
        }
    };
    fleet
        .log_event(
            "worker_restarted",
            Some(slot.id),
            call_sid.as_deref(),
            &format!(
                "silent for {:.1}s; generation {old_generation} -> {}; {what}",
                quiet.as_secs_f64(),
                old_generation + 1
            ),
        )
        .await;
    if restarts.len() >= ESCALATE_RESTARTS {
        escalate(
            fleet,
            &format!("{} worker restarts in the last minute", restarts.len()),
        )
        .await;
    }
}

async fn escalate(fleet: &Arc<Fleet>, why: &str) {
    fleet
        .metrics
        .healer_escalations_total
        .fetch_add(1, Ordering::Relaxed);
    fleet
        .alerts
        .observe(AlertName::WorkerStalled, true, Instant::now(), || {
            why.to_string()
        });
    fleet.log_event("healer_escalated", None, None, why).await;
}
