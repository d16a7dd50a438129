//! The series `report.html` draws, taken from the journal as the grader read it
//! ([`RunRecord`]): active calls, call success, response latency, the fleet's RSS and temp
//! dir, and the TTS stand-in's requests by status. Each is downsampled to at most
//! [`MAX_POINTS`] points keeping every bucket's minimum and maximum, so a spike survives and
//! a 72-hour run draws as small as a minute's.

use crate::grade::replay::RunRecord;

/// Points drawn per series at most.
pub const MAX_POINTS: usize = 1_000;

/// Statuses of TTS requests drawn one by one; the rarer ones are summed as `other`.
pub const MAX_STATUSES: usize = 6;

/// One line: (run seconds, value) in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart of the timeline: its series share the y axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: &'static str,
    /// Empty where the title says it (calls).
    pub unit: &'static str,
    pub series: Vec<Series>,
    /// Why it is empty, when it is: what the journal lacks.
    pub missing: &'static str,
    /// Where the y axis ends at least (100 for a percentage).
    pub floor_max: f64,
}

impl Panel {
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|series| series.points.is_empty())
    }
}

/// The panels of a run, each series downsampled to [`MAX_POINTS`].
pub fn panels(run: &RunRecord) -> Vec<Panel> {
    let intervals = &run.intervals;
    let series = |name: &str, points: Vec<(f64, f64)>| Series {
        name: name.to_owned(),
        points: downsample(&points, MAX_POINTS),
    };
    let active = intervals
        .iter()
        .filter_map(|interval| Some((interval.to_s, interval.active? as f64)))
        .collect();
    let success = intervals
        .iter()
        .filter(|interval| interval.completed + interval.failed > 0)
        .map(|interval| {
            let graded = (interval.completed + interval.failed) as f64;
            (interval.to_s, interval.completed as f64 / graded * 100.0)
        })
        .collect();
    let latency = |pick: fn(&crate::grade::replay::IntervalPoint) -> Option<f64>| {
        intervals
            .iter()
            .filter_map(|interval| Some((interval.to_s, pick(interval)?)))
            .collect()
    };
    let mib = |samples: &[(f64, f64)]| {
        samples
            .iter()
            .map(|(t_s, bytes)| (*t_s, crate::units::mib(*bytes)))
            .collect()
    };
    vec![
        Panel {
            title: "Active calls",
            unit: "",
            series: vec![series("active", active)],
            missing: "no interval in the journal says how many calls were active",
            floor_max: 1.0,
        },
        Panel {
            title: "Call success",
            unit: "%",
            series: vec![series("success", success)],
            missing: "no call ended in this run",
            floor_max: 100.0,
        },
        Panel {
            title: "Response latency",
            unit: "ms",
            series: vec![
                series("p50", latency(|interval| interval.response_p50_ms)),
                series("p95", latency(|interval| interval.response_p95_ms)),
                series("p99", latency(|interval| interval.response_p99_ms)),
            ],
            missing: "no response was measured",
            floor_max: 1.0,
        },
        Panel {
            title: "Fleet RSS",
            unit: "MiB",
            series: vec![series("RSS", mib(&run.rss))],
            missing: "the fleet's memory was not watched (no process, no rss_metric)",
            floor_max: 1.0,
        },
        Panel {
            title: "Temp dir",
            unit: "MiB",
            series: vec![series("size", mib(&run.temp_dir))],
            missing: "no temp dir was watched",
            floor_max: 1.0,
        },
        Panel {
            title: "TTS requests by status",
            unit: "req/s",
            series: tts_series(run),
            missing: "no TTS stand-in in this run (an external fleet's TTS is not seen)",
            floor_max: 1.0,
        },
    ]
}

/// Requests per second by HTTP status, the [`MAX_STATUSES`] most frequent one by one.
fn tts_series(run: &RunRecord) -> Vec<Series> {
    let mut totals: Vec<(&str, u64)> = Vec::new();
    for window in &run.tts_windows {
        for (status, count) in &window.by_status {
            match totals.iter_mut().find(|(known, _)| *known == status) {
                Some((_, total)) => *total = total.saturating_add(*count),
                None => totals.push((status, *count)),
            }
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<&str> = totals
        .iter()
        .take(MAX_STATUSES)
        .map(|(status, _)| *status)
        .collect();
    let rest = totals.len() > shown.len();
    let mut names: Vec<String> = shown.iter().map(|status| (*status).to_owned()).collect();
    if rest {
        names.push("other".to_owned());
    }
    let mut points: Vec<Vec<(f64, f64)>> = vec![Vec::new(); names.len()];
    for window in &run.tts_windows {
        let per_second = window.window_s.max(1e-3);
        let mut counts = vec![0u64; names.len()];
        for (status, count) in &window.by_status {
            let index = shown
                .iter()
                .position(|known| known == status)
                .unwrap_or(shown.len());
            if let Some(slot) = counts.get_mut(index) {
                *slot = slot.saturating_add(*count);
            }
        }
        for (line, count) in points.iter_mut().zip(counts) {
            line.push((window.to_s, count as f64 / per_second));
        }
    }
    names
        .into_iter()
        .zip(points)
        .map(|(name, points)| Series {
            name,
            points: downsample(&points, MAX_POINTS),
        })
        .collect()
}

/// `points` (in time order) cut to at most `max_points`: split into `max_points / 2`
/// buckets of consecutive points, each keeps its lowest and highest point, in time order.
/// Points that are not finite numbers are left out. (Below 2, `max_points` is taken as 2.)
pub fn downsample(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    if finite.len() <= max_points {
        return finite;
    }
    let buckets = (max_points / 2).max(1);
    let mut out = Vec::with_capacity(buckets * 2);
    for bucket in 0..buckets {
        let from = bucket * finite.len() / buckets;
        let to = ((bucket + 1) * finite.len() / buckets).max(from + 1);
        let slice = &finite[from..to.min(finite.len())];
        let lowest = (0..slice.len())
            .min_by(|a, b| slice[*a].1.total_cmp(&slice[*b].1))
            .unwrap_or(0);
        let highest = (0..slice.len())
            .max_by(|a, b| slice[*a].1.total_cmp(&slice[*b].1))
            .unwrap_or(0);
        let (first, second) = (lowest.min(highest), lowest.max(highest));
        out.push(slice[first]);
        if second != first {
            out.push(slice[second]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_series_are_kept_whole_and_long_ones_bounded() {
        let short: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(downsample(&short, 1_000), short);
        let long: Vec<(f64, f64)> = (0..51_840)
            .map(|i| (i as f64 * 5.0, (i % 7) as f64))
            .collect();
        let drawn = downsample(&long, MAX_POINTS);
        assert!(drawn.len() <= MAX_POINTS, "{}", drawn.len());
        assert!(drawn.len() >= MAX_POINTS - 2, "{}", drawn.len());
        assert!(
            drawn.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "still in time order"
        );
        assert_eq!(drawn.first().unwrap().0, 0.0);
    }

    #[test]
    fn a_single_spike_and_a_single_dip_survive() {
        let mut points: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, 50.0)).collect();
        points[31_337].1 = 9_000.0;
        points[77_777].1 = -3.0;
        let drawn = downsample(&points, 100);
        assert!(drawn.len() <= 100);
        assert!(drawn.contains(&(31_337.0, 9_000.0)), "{drawn:?}");
        assert!(drawn.contains(&(77_777.0, -3.0)), "{drawn:?}");
    }

    #[test]
    fn numbers_that_are_not_finite_are_left_out() {
        let points = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (f64::INFINITY, 2.0),
            (3.0, 4.0),
        ];
        assert_eq!(downsample(&points, 10), [(0.0, 1.0), (3.0, 4.0)]);
        let many: Vec<(f64, f64)> = (0..5_000)
            .map(|i| (i as f64, if i % 2 == 0 { f64::NAN } else { 1.0 }))
            .collect();
        assert!(downsample(&many, 10).iter().all(|(_, v)| v.is_finite()));
        assert!(downsample(&[], 10).is_empty());
    }
}
