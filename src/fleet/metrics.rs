//! What the fleet counts, exposed on `GET /metrics` in the Prometheus text format (0.0.4).
//! Names carry no prefix so operators' expressions read naturally
//! (`db_pool_in_use / db_pool_size > 0.95`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the response latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 11] = [0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0];

/// A counter with one label, e.g. `tts_requests_total{status="429"}`.
#[derive(Debug, Default)]
pub struct LabelledCounter {
    values: Mutex<BTreeMap<String, u64>>,
}

impl LabelledCounter {
    pub fn add(&self, label: &str, by: u64) {
        let mut values = self
            .values
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *values.entry(label.to_string()).or_default() += by;
    }

    pub fn get(&self, label: &str) -> u64 {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        values.get(label).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        values.values().sum()
    }

    /// The sum over every label but `except`, read at one instant.
    pub fn total_except(&self, except: &[&str]) -> u64 {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        values
            .iter()
            .filter(|(label, _)| !except.contains(&label.as_str()))
            .map(|(_, value)| value)
            .sum()
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.values
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// Cumulative histogram of response latencies.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Every metric of the fleet. Gauges that are read from elsewhere at scrape time (pool,
/// temp dir, RSS, silent workers) are passed to [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub calls_total: AtomicU64,
    pub calls_active: AtomicU64,
    pub turns_total: AtomicU64,
    /// Turns that produced no agent audio, by reason.
    pub turn_failures_total: LabelledCounter,
    pub response_latency: LatencyHistogram,
    pub llm_requests_total: LabelledCounter,
    /// LLM answers that took longer than [`super::llm::SLOW`], whatever their outcome.
    pub llm_slow_total: AtomicU64,
    /// By HTTP status, or `timeout` / `error` when there was none.
    pub tts_requests_total: LabelledCounter,
    pub tts_retries_total: AtomicU64,
    /// TTS requests (attempts) that took longer than [`super::tts::SLOW`].
    pub tts_slow_total: AtomicU64,
    /// Turns that played the cached apology because TTS gave up.
    pub tts_fallbacks_total: AtomicU64,
    pub tool_calls_total: AtomicU64,
    pub tool_calls_rejected_total: LabelledCounter,
    pub db_errors_total: LabelledCounter,
    pub db_pool_timeouts_total: AtomicU64,
    /// Statements that gave up waiting for a lock (see `DbError::waited_out_a_lock`).
    pub db_lock_timeouts_total: AtomicU64,
    pub healer_restarts_total: AtomicU64,
    pub healer_escalations_total: AtomicU64,
    pub temp_files_deleted_total: AtomicU64,
    pub signature_rejections_total: AtomicU64,
    pub protocol_errors_total: AtomicU64,
    pub alerts_sent_total: LabelledCounter,
}

/// Values read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub db_pool_in_use: u32,
    pub db_pool_size: u32,
    pub temp_dir_bytes: u64,
    pub temp_dir_files: u64,
    pub resident_memory_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub workers: u32,
    pub workers_silent: u32,
    pub queue_depth: u64,
    /// Rows in the `dead_letters` table: turns the fleet abandoned.
    pub dead_letters: u64,
    /// Dead letters lost to a full queue before they reached the table.
    pub dead_letters_dropped: u64,
    /// Alert name → whether it is firing.
    pub alerts: BTreeMap<&'static str, bool>,
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        self.render_calls(&mut out, gauges);
        self.render_upstreams(&mut out);
        self.render_storage(&mut out, gauges);
        self.render_process(&mut out, gauges);
        self.render_requests_and_alerts(&mut out, gauges);
        out
    }

    /// Calls and turns: how many, how they failed, how fast the agent answered, and the
    /// turns it abandoned.
    fn render_calls(&self, out: &mut String, gauges: &Gauges) {
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        counter(
            out,
            "calls_total",
            "Calls accepted.",
            load(&self.calls_total),
        );
        gauge(
            out,
            "calls_active",
            "Calls in progress.",
            load(&self.calls_active),
        );
        counter(
            out,
            "turns_total",
            "Agent turns started.",
            load(&self.turns_total),
        );
        labelled(
            out,
            "turn_failures_total",
            "Turns without agent audio.",
            "reason",
            &self.turn_failures_total,
        );
        gauge(
            out,
            "dead_letters",
            "Rows in the dead-letter table: turns the fleet abandoned.",
            gauges.dead_letters,
        );
        counter(
            out,
            "dead_letters_dropped_total",
            "Dead letters lost to a full queue before reaching the table.",
            gauges.dead_letters_dropped,
        );
        self.render_latency(out);
    }

    /// The LLM, TTS and tool calls the turns made.
    fn render_upstreams(&self, out: &mut String) {
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        labelled(
            out,
            "llm_requests_total",
            "LLM requests by outcome.",
            "status",
            &self.llm_requests_total,
        );
        counter(
            out,
            "llm_slow_total",
            "LLM answers slower than 3 s.",
            load(&self.llm_slow_total),
        );
        labelled(
            out,
            "tts_requests_total",
            "TTS requests by HTTP status.",
            "status",
            &self.tts_requests_total,
        );
        counter(
            out,
            "tts_slow_total",
            "TTS requests slower than 2 s.",
            load(&self.tts_slow_total),
        );
        counter(
            out,
            "tts_retries_total",
            "TTS requests that were retries.",
            load(&self.tts_retries_total),
        );
        counter(
            out,
            "tts_fallbacks_total",
            "Turns that played the cached apology after TTS gave up.",
            load(&self.tts_fallbacks_total),
        );
        counter(
            out,
            "tool_calls_total",
            "Tool calls the LLM asked for.",
            load(&self.tool_calls_total),
        );
        labelled(
            out,
            "tool_calls_rejected_total",
            "Tool calls refused by validation.",
            "reason",
            &self.tool_calls_rejected_total,
        );
    }

    /// The database pool and the audio temp dir.
    fn render_storage(&self, out: &mut String, gauges: &Gauges) {
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        gauge(
            out,
            "db_pool_in_use",
            "Database connections checked out.",
            u64::from(gauges.db_pool_in_use),
        );
        gauge(
            out,
            "db_pool_size",
            "Database pool size.",
            u64::from(gauges.db_pool_size),
        );
        counter(
            out,
            "db_pool_timeouts_total",
            "Waits for a pooled connection that timed out.",
            load(&self.db_pool_timeouts_total),
        );
        counter(
            out,
            "db_lock_timeouts_total",
            "Statements that gave up waiting for a lock another session held.",
            load(&self.db_lock_timeouts_total),
        );
        labelled(
            out,
            "db_errors_total",
            "Database errors by operation.",
            "op",
            &self.db_errors_total,
        );
        gauge(
            out,
            "temp_dir_bytes",
            "Bytes in the audio temp dir.",
            gauges.temp_dir_bytes,
        );
        gauge(
            out,
            "temp_dir_files",
            "Files in the audio temp dir.",
            gauges.temp_dir_files,
        );
        counter(
            out,
            "temp_files_deleted_total",
            "Temp audio files deleted.",
            load(&self.temp_files_deleted_total),
        );
    }

    /// The process's memory, the workers and their healer.
    fn render_process(&self, out: &mut String, gauges: &Gauges) {
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory.",
            gauges.resident_memory_bytes,
        );
        if let Some(limit) = gauges.memory_limit_bytes {
            gauge(
                out,
                "process_memory_limit_bytes",
                "Memory limit (the process is killed above it).",
                limit,
            );
        }
        gauge(out, "workers", "Worker slots.", u64::from(gauges.workers));
        gauge(
            out,
            "workers_silent",
            "Workers silent longer than stall_after.",
            u64::from(gauges.workers_silent),
        );
        gauge(
            out,
            "job_queue_depth",
            "Turns waiting for a worker.",
            gauges.queue_depth,
        );
        counter(
            out,
            "healer_restarts_total",
            "Workers restarted by the healer.",
            load(&self.healer_restarts_total),
        );
        counter(
            out,
            "healer_escalations_total",
            "Times the healer gave up and raised an alert.",
            load(&self.healer_escalations_total),
        );
    }

    /// Refused webhook and Media Streams requests, and the alerts.
    fn render_requests_and_alerts(&self, out: &mut String, gauges: &Gauges) {
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        counter(
            out,
            "signature_rejections_total",
            "Requests refused for a bad X-Twilio-Signature.",
            load(&self.signature_rejections_total),
        );
        counter(
            out,
            "protocol_errors_total",
            "Malformed Media Streams messages.",
            load(&self.protocol_errors_total),
        );
        labelled(
            out,
            "alerts_sent_total",
            "Alert notifications sent, by alert name.",
            "alertname",
            &self.alerts_sent_total,
        );
        header(out, "alerts_firing", "gauge", "1 while the alert fires.");
        for (name, firing) in &gauges.alerts {
            let _ = writeln!(
                out,
                "alerts_firing{{alertname=\"{name}\"}} {}",
                u8::from(*firing)
            );
        }
    }

    fn render_latency(&self, out: &mut String) {
        let name = "response_latency_seconds";
        header(
            out,
            name,
            "histogram",
            "End of caller speech to the first agent audio sent.",
        );
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.response_latency.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.response_latency.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.response_latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn labelled(out: &mut String, name: &str, help: &str, label: &str, values: &LabelledCounter) {
    header(out, name, "counter", help);
    for (value, count) in values.snapshot() {
        let _ = writeln!(
            out,
            "{name}{{{label}=\"{}\"}} {count}",
            escape_label(&value)
        );
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_types_labels_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.tts_requests_total.add("429", 3);
        metrics.tts_requests_total.add("200", 1);
        metrics.response_latency.observe(Duration::from_millis(300));
        metrics.response_latency.observe(Duration::from_millis(900));
        let gauges = Gauges {
            db_pool_in_use: 9,
            db_pool_size: 10,
            dead_letters: 4,
            alerts: BTreeMap::from([("TtsRateLimited", true)]),
            ..Gauges::default()
        };
        let text = metrics.render(&gauges);
        assert!(text.contains("# TYPE tts_requests_total counter\n"));
        assert!(text.contains("tts_requests_total{status=\"429\"} 3\n"));
        assert!(
            text.contains("db_pool_in_use 9\ndb_pool_size 10\n")
                || text.contains("db_pool_in_use 9\n")
        );
        assert!(text.contains("response_latency_seconds_bucket{le=\"0.25\"} 0\n"));
        assert!(text.contains("response_latency_seconds_bucket{le=\"0.5\"} 1\n"));
        assert!(text.contains("response_latency_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("response_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("response_latency_seconds_count 2\n"));
        assert!(text.contains("alerts_firing{alertname=\"TtsRateLimited\"} 1\n"));
        assert!(text.contains("# TYPE dead_letters gauge\ndead_letters 4\n"));
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
