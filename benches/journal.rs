//! What the journal writer adds to every line: masking secrets and escaping hidden
//! characters ([`voxsoak::redact::text`], [`voxsoak::escape::json`]), against serializing
//! the record at all. Measured on an interval record, the biggest and most frequent one.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use serde_json::json;

/// An interval record as a long run writes it: six histograms of many values, outcomes,
/// closes, failure examples with a fleet's close reasons.
fn interval_record() -> serde_json::Value {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).unwrap();
    for value in 0..5_000u64 {
        histogram.record(1 + value * 7919 % 40_000).unwrap();
    }
    let encoded = voxsoak::journal::histogram::encode(&histogram).unwrap();
    json!({
        "from_s": 3600.0, "active": 1000, "started": 250, "connected": 249, "completed": 240,
        "failed": 3, "dropped": 0, "replies": 4800, "marks_echoed": 4790,
        "outcomes": {"completed": 240, "fleet_hung_up": 2, "turn_timeout": 1},
        "protocol_errors": {"bad_json": 1},
        "closes": {"caller": 240, "fleet 1000": 2, "fleet abrupt": 1},
        "waiting": 12, "longest_wait_ms": 1830,
        "response_ms": {"count": 4800, "p50": 612.0, "p95": 901.0, "p99": 1402.0, "max": 2210.0},
        "hist": {
            "response": encoded, "first_audio": encoded, "connect": encoded,
            "dead_air": encoded, "mark_wait": encoded, "pacing": encoded,
        },
        "failure_examples": [
            {"outcome": "fleet_hung_up", "detail": "the fleet closed with 1011: internal error while speaking"},
            {"outcome": "turn_timeout", "detail": "no reply within 10s after turn 3"},
        ],
        "harness": {"cpu_pct_avg": 52.0, "cpu_pct_max": 61.0, "peak_active_calls": 1000,
                    "rss_kib_per_call": 24.0, "rss_mib_baseline": 26.1, "rss_mib_max": 50.2},
    })
}

fn journal_line(c: &mut Criterion) {
    let record = interval_record();
    let serialized = serde_json::to_string(&record).unwrap();
    let mut group = c.benchmark_group("journal interval line");
    group.bench_function("serde_json", |b| {
        b.iter(|| black_box(serde_json::to_string(black_box(&record)).unwrap()))
    });
    group.bench_function("mask and escape", |b| {
        b.iter(|| {
            let masked = voxsoak::redact::text(black_box(&serialized));
            black_box(voxsoak::escape::json(&masked).len())
        })
    });
    group.finish();
    println!("interval line: {} bytes", serialized.len());
}

criterion_group!(benches, journal_line);
criterion_main!(benches);
