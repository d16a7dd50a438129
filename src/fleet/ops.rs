//! What operators see: `GET /health`, `GET /metrics`, and the loop that evaluates the
//! alert conditions from the fleet's own state.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio::time::Instant;

use super::alerts::AlertName;
use super::metrics::{Gauges, Metrics};
use super::{Fleet, memory, tempdir};

/// How often alert conditions are evaluated.
const EVALUATE_EVERY: Duration = Duration::from_millis(250);
/// How long the pool must stay at 95% or more before `DbPoolSaturated` fires: a pool
/// that fills for an instant under a burst is doing its job.
const POOL_SATURATED_FOR: Duration = Duration::from_secs(1);
/// RSS growth over [`MEMORY_WINDOW`] that raises `MemoryGrowth`.
const MEMORY_GROWTH_BYTES: u64 = 256 << 20;
const MEMORY_WINDOW: Duration = Duration::from_secs(60);
/// Share of the memory limit that raises `MemoryGrowth`.
const MEMORY_LIMIT_SHARE: f64 = 0.8;

/// `GET /health`: 200 `{"status":"ok"}`, or 503 with the reasons.
pub async fn health(State(fleet): State<Arc<Fleet>>) -> impl IntoResponse {
    let reasons = unhealthy_reasons(&fleet);
    let (status, body) = if reasons.is_empty() {
        (StatusCode::OK, serde_json::json!({ "status": "ok" }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "unhealthy", "reasons": reasons }),
        )
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

fn unhealthy_reasons(fleet: &Fleet) -> Vec<String> {
    let mut reasons = Vec::new();
    // As the alert judges it: a pool full for an instant (every worker's first ping at
    // start, a burst) is doing its job.
    if fleet.alerts.is_firing(AlertName::DbPoolSaturated) {
        let (in_use, size) = (fleet.db.pool_in_use(), fleet.db.pool_size());
        reasons.push(format!("db pool saturated: {in_use}/{size} in use"));
    }
    if fleet.alerts.is_firing(AlertName::TtsRateLimited) {
        reasons.push("TTS failing: rate limited (429)".to_string());
    }
    let now = Instant::now();
    for slot in &fleet.workers {
        let silent = slot.silent_for(now);
        if silent > fleet.options.stall_after {
            reasons.push(format!(
                "worker {} silent for {:.1}s",
                slot.id,
                silent.as_secs_f64()
            ));
        }
    }
    let bytes = fleet.temp_dir_bytes.load(Ordering::Relaxed);
    if bytes > fleet.options.temp_dir_budget {
        reasons.push(format!(
            "temp dir over budget: {} > {}",
            crate::units::format_byte_size(bytes),
            crate::units::format_byte_size(fleet.options.temp_dir_budget)
        ));
    }
    reasons
}

fn pool_saturated(in_use: u32, size: u32) -> bool {
    size > 0 && u64::from(in_use) * 100 >= u64::from(size) * 95
}

/// `GET /metrics`.
pub async fn metrics(State(fleet): State<Arc<Fleet>>) -> impl IntoResponse {
    let now = Instant::now();
    let gauges = Gauges {
        db_pool_in_use: fleet.db.pool_in_use(),
        db_pool_size: fleet.db.pool_size(),
        temp_dir_bytes: fleet.temp_dir_bytes.load(Ordering::Relaxed),
        temp_dir_files: fleet.temp_dir_files.load(Ordering::Relaxed),
        resident_memory_bytes: memory::resident_bytes(),
        memory_limit_bytes: fleet.options.memory_limit,
        workers: fleet.workers.len() as u32,
        workers_silent: fleet
            .workers
            .iter()
            .filter(|slot| slot.silent_for(now) > fleet.options.stall_after)
            .count() as u32,
        queue_depth: fleet.queue.len() as u64,
        dead_letters: fleet.dead_letters.rows(),
        dead_letters_dropped: fleet.dead_letters.dropped(),
        alerts: fleet.alerts.firing(),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        fleet.metrics.render(&gauges),
    )
}

/// What `DbPoolSaturated` watches: how long the pool has been full, and waits for a
/// connection or for a lock that timed out.
struct PoolWatch {
    saturated_since: Option<Instant>,
    seen_pool_timeouts: Growth,
    seen_lock_timeouts: Growth,
}

impl PoolWatch {
    fn observe(&mut self, fleet: &Fleet, now: Instant) {
        let metrics = &fleet.metrics;
        let (in_use, size) = (fleet.db.pool_in_use(), fleet.db.pool_size());
        if !pool_saturated(in_use, size) {
            self.saturated_since = None;
        } else if self.saturated_since.is_none() {
            self.saturated_since = Some(now);
        }
        let saturated_for = self
            .saturated_since
            .map_or(Duration::ZERO, |since| now - since);
        let new_timeouts = self
            .seen_pool_timeouts
            .since(metrics.db_pool_timeouts_total.load(Ordering::Relaxed));
        let new_lock_timeouts = self
            .seen_lock_timeouts
            .since(metrics.db_lock_timeouts_total.load(Ordering::Relaxed));
        fleet.alerts.observe(
            AlertName::DbPoolSaturated,
            saturated_for >= POOL_SATURATED_FOR || new_timeouts > 0 || new_lock_timeouts > 0,
            now,
            || {
                format!(
                    "db pool at {in_use}/{size} for {:.1}s; {new_timeouts} waits for a connection \
                     and {new_lock_timeouts} waits for a lock timed out",
                    saturated_for.as_secs_f64()
                )
            },
        );
    }
}

/// Evaluates every alert condition until shutdown; also keeps the temp dir measured and
/// (in the fixed fleet) swept.
pub async fn evaluate(fleet: Arc<Fleet>) {
    let mut tick = tokio::time::interval(EVALUATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = &fleet.metrics;
    let mut upstream_watch = UpstreamWatch::new(metrics);
    let mut pool_watch = PoolWatch {
        saturated_since: None,
        seen_pool_timeouts: Growth(metrics.db_pool_timeouts_total.load(Ordering::Relaxed)),
        seen_lock_timeouts: Growth(metrics.db_lock_timeouts_total.load(Ordering::Relaxed)),
    };
    let mut host_watch = HostWatch {
        rss_window: Default::default(),
        last_measure: None,
        last_sweep: Instant::now(),
    };
    loop {
        tokio::select! {
            _ = fleet.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        upstream_watch.observe(&fleet, now);
        pool_watch.observe(&fleet, now);
        // Raised by the healer and the agent when they act; here they only resolve.
        fleet
            .alerts
            .observe(AlertName::WorkerStalled, false, now, String::new);
        fleet
            .alerts
            .observe(AlertName::ToolCallRejected, false, now, String::new);
        host_watch.observe(&fleet, now).await;
    }
}

/// TTS requests that failed: any answer but 200 and 429 (counted apart).
fn tts_failures(metrics: &Metrics) -> u64 {
    metrics.tts_requests_total.total_except(&["200", "429"])
}

/// LLM requests that failed: any answer but 200.
fn llm_failures(metrics: &Metrics) -> u64 {
    metrics.llm_requests_total.total_except(&["200"])
}

/// What `TtsRateLimited`, `TtsDegraded` and `LlmDegraded` watch: each counter as of the last
/// evaluation, so an alert fires while it grows.
struct UpstreamWatch {
    seen_429: Growth,
    seen_tts_failed: Growth,
    seen_tts_slow: Growth,
    seen_llm_failed: Growth,
    seen_llm_slow: Growth,
}

impl UpstreamWatch {
    fn new(metrics: &Metrics) -> UpstreamWatch {
        UpstreamWatch {
            seen_429: Growth(metrics.tts_requests_total.get("429")),
            seen_tts_failed: Growth(tts_failures(metrics)),
            seen_tts_slow: Growth(metrics.tts_slow_total.load(Ordering::Relaxed)),
            seen_llm_failed: Growth(llm_failures(metrics)),
            seen_llm_slow: Growth(metrics.llm_slow_total.load(Ordering::Relaxed)),
        }
    }

    fn observe(&mut self, fleet: &Fleet, now: Instant) {
        let metrics = &fleet.metrics;
        let new_429 = self.seen_429.since(metrics.tts_requests_total.get("429"));
        fleet
            .alerts
            .observe(AlertName::TtsRateLimited, new_429 > 0, now, || {
                format!("TTS answered {new_429} requests with 429 in the last {EVALUATE_EVERY:?}")
            });

        let failed = self.seen_tts_failed.since(tts_failures(metrics));
        let slow = self
            .seen_tts_slow
            .since(metrics.tts_slow_total.load(Ordering::Relaxed));
        fleet
            .alerts
            .observe(AlertName::TtsDegraded, failed + slow > 0, now, || {
                format!(
                    "TTS: {failed} requests failed (5xx, timeout, connection) and {slow} took over {:?} in the last {EVALUATE_EVERY:?}",
                    super::tts::SLOW
                )
            });
        let failed = self.seen_llm_failed.since(llm_failures(metrics));
        let slow = self
            .seen_llm_slow
            .since(metrics.llm_slow_total.load(Ordering::Relaxed));
        fleet
            .alerts
            .observe(AlertName::LlmDegraded, failed + slow > 0, now, || {
                format!(
                    "LLM: {failed} requests failed (status, timeout, bad stream) and {slow} took over {:?} in the last {EVALUATE_EVERY:?}",
                    super::llm::SLOW
                )
            });
    }
}

/// What `TempDirGrowing` and the memory alert watch, measured at most once a second: the
/// audio temp dir (swept in the fixed fleet) and the process's memory over a window.
struct HostWatch {
    rss_window: std::collections::VecDeque<(Instant, u64)>,
    last_measure: Option<Instant>,
    last_sweep: Instant,
}

impl HostWatch {
    async fn observe(&mut self, fleet: &Arc<Fleet>, now: Instant) {
        if self
            .last_measure
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.last_measure = Some(now);
        measure_temp_dir(fleet, &mut self.last_sweep, now).await;
        let bytes = fleet.temp_dir_bytes.load(Ordering::Relaxed);
        let budget = fleet.options.temp_dir_budget;
        fleet
            .alerts
            .observe(AlertName::TempDirGrowing, bytes > budget, now, || {
                format!(
                    "audio temp dir holds {} (budget {})",
                    crate::units::format_byte_size(bytes),
                    crate::units::format_byte_size(budget)
                )
            });
        observe_memory(fleet, &mut self.rss_window, now);
    }
}

/// A counter's value at the last evaluation.
#[derive(Debug)]
struct Growth(u64);

impl Growth {
    /// How much the counter grew since the last call, now that it reads `now`.
    fn since(&mut self, now: u64) -> u64 {
        let grown = now.saturating_sub(self.0);
        self.0 = now;
        grown
    }
}

async fn measure_temp_dir(fleet: &Arc<Fleet>, last_sweep: &mut Instant, now: Instant) {
    let dir = fleet.audio_dir.clone();
    let sweep = !fleet.options.has(super::Bug::TempLeak)
        && now.duration_since(*last_sweep) >= tempdir::SWEEP_INTERVAL;
    if sweep {
        *last_sweep = now;
    }
    let measured = tokio::task::spawn_blocking(move || {
        let removed = if sweep {
            tempdir::sweep(&dir, tempdir::SWEEP_AGE)
        } else {
            0
        };
        (removed, tempdir::usage(&dir))
    })
    .await;
    if let Ok((removed, usage)) = measured {
        fleet
            .metrics
            .temp_files_deleted_total
            .fetch_add(removed, Ordering::Relaxed);
        fleet.temp_dir_bytes.store(usage.bytes, Ordering::Relaxed);
        fleet.temp_dir_files.store(usage.files, Ordering::Relaxed);
    }
}

fn observe_memory(
    fleet: &Fleet,
    window: &mut std::collections::VecDeque<(Instant, u64)>,
    now: Instant,
) {
    let rss = memory::resident_bytes();
    window.push_back((now, rss));
    while window
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > MEMORY_WINDOW)
    {
        window.pop_front();
    }
    let low = window.iter().map(|(_, bytes)| *bytes).min().unwrap_or(rss);
    let grew = rss.saturating_sub(low);
    let near_limit = fleet
        .options
        .memory_limit
        .is_some_and(|limit| rss as f64 > limit as f64 * MEMORY_LIMIT_SHARE);
    fleet.alerts.observe(
        AlertName::MemoryGrowth,
        near_limit || grew > MEMORY_GROWTH_BYTES,
        now,
        || {
            format!(
                "RSS {} (grew {} in the last minute)",
                crate::units::format_byte_size(rss),
                crate::units::format_byte_size(grew)
            )
        },
    );
}
