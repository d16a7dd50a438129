//! Response latency during each fault's window, and outside every window (the calm p95 a
//! fault's impact is told against), added up while the journal is read: a 72-hour journal
//! holds 50,000 intervals, whose response histograms are neither kept nor read twice.
//!
//! A fault's window runs from its injection to its clear (to the run's end when it was
//! never cleared); an interval is in a window when the two overlap. An interval waits
//! two minutes of journal time before it is put in its windows, because an injection is
//! journaled when it is done but timed when it began: its `fault_injected` can come after
//! an interval it overlaps.

use std::collections::VecDeque;

use crate::journal::histogram::{IndexCounts, quantile};

/// How long (journal time) an interval waits before it is put in its windows: longer than
/// any injection or clear takes to be journaled.
const SETTLE_S: f64 = 120.0;

/// One fault's window as read so far: `fault` is its index in the reader's list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub fault: usize,
    pub from: f64,
    /// The clear; None while it has not been read (to the run's end if it never is).
    pub to: Option<f64>,
}

/// The response p95s, from [`ResponseWindows::finish`].
#[derive(Debug, Default, PartialEq)]
pub struct ResponseP95s {
    /// Over the intervals in no window, in milliseconds (None: no response measured).
    pub calm_ms: Option<f64>,
    /// Per fault (its index), over the intervals in its window; a fault no interval
    /// overlapped is absent.
    pub during_ms: Vec<(usize, Option<f64>)>,
}

/// Intervals' response counts, put in the windows they overlap.
#[derive(Debug, Default)]
pub struct ResponseWindows {
    pending: VecDeque<Pending>,
    calm: IndexCounts,
    /// Per fault (its index) whose window took an interval and may take more.
    during: Vec<(usize, IndexCounts)>,
    done: Vec<(usize, Option<f64>)>,
}

#[derive(Debug)]
struct Pending {
    from: f64,
    to: f64,
    response: Vec<(u32, u64)>,
}

impl ResponseWindows {
    /// Takes an interval from `from` to `to` with its response counts (bucket index,
    /// count: `journal::histogram::Sum::last`); `windows` are the faults' as read so far.
    pub fn interval(&mut self, from: f64, to: f64, response: &[(u32, u64)], windows: &[Window]) {
        self.pending.push_back(Pending {
            from,
            to,
            response: response.to_vec(),
        });
        self.settle(windows, Some(to - SETTLE_S), None);
    }

    /// Puts every interval still waiting in its windows, now that the journal is read and
    /// the run ended at `end`, and gives the p95s.
    pub fn finish(mut self, windows: &[Window], end: f64) -> ResponseP95s {
        self.settle(windows, None, Some(end));
        let mut during_ms = self.done;
        during_ms.extend(
            self.during
                .iter()
                .map(|(fault, counts)| (*fault, p95_ms(counts))),
        );
        during_ms.sort_by_key(|(fault, _)| *fault);
        ResponseP95s {
            calm_ms: p95_ms(&self.calm),
            during_ms,
        }
    }

    /// Puts the intervals that ended before `before` (all when None) in their windows;
    /// a window not yet cleared runs to `end` (on and on while it is not known).
    fn settle(&mut self, windows: &[Window], before: Option<f64>, end: Option<f64>) {
        while let Some(interval) = self
            .pending
            .front()
            .filter(|interval| before.is_none_or(|before| interval.to <= before))
        {
            let mut in_any = false;
            for window in windows {
                let to = window
                    .to
                    .or(end)
                    .map_or(f64::INFINITY, |to| to.max(window.from));
                if interval.from < to && window.from < interval.to {
                    in_any = true;
                    let at = match self.during.iter().position(|(f, _)| *f == window.fault) {
                        Some(at) => at,
                        None => {
                            self.during.push((window.fault, IndexCounts::default()));
                            self.during.len() - 1
                        }
                    };
                    self.during[at].1.add(&interval.response);
                }
            }
            if !in_any {
                self.calm.add(&interval.response);
            }
            self.pending.pop_front();
        }
        // A window cleared before every interval still to come takes no more: its p95 is
        // known, and its counts go.
        let Some(next_from) = self.pending.front().map(|interval| interval.from) else {
            return;
        };
        let mut at = 0;
        while at < self.during.len() {
            let fault = self.during[at].0;
            let closed = windows
                .iter()
                .find(|window| window.fault == fault)
                .and_then(|window| window.to)
                .is_some_and(|to| to <= next_from);
            if closed {
                let (fault, counts) = self.during.swap_remove(at);
                self.done.push((fault, p95_ms(&counts)));
            } else {
                at += 1;
            }
        }
    }
}

/// The p95 of `counts` (microseconds) in whole milliseconds; None when it holds none.
fn p95_ms(counts: &IndexCounts) -> Option<f64> {
    quantile(&counts.buckets(), 0.95).map(|micros| (micros as f64 / 1000.0).round())
}

#[cfg(test)]
mod tests {
    use super::*;

    use hdrhistogram::Histogram;

    use crate::journal::histogram::{Sum, encode};

    /// The response counts of one interval whose every response took `ms`.
    fn responses(ms: u64, count: u64) -> Vec<(u32, u64)> {
        let mut histogram = crate::journal::calls::latency_histogram();
        histogram.record_n(ms * 1000, count).unwrap();
        let mut sum = Sum::default();
        sum.add(&encode(&histogram).unwrap()).unwrap();
        sum.last().to_vec()
    }

    fn p95_of(values: &[(u64, u64)]) -> Option<f64> {
        let mut histogram: Histogram<u64> = crate::journal::calls::latency_histogram();
        for (ms, count) in values {
            histogram.record_n(ms * 1000, *count).unwrap();
        }
        Some((histogram.value_at_quantile(0.95) as f64 / 1000.0).round())
    }

    /// Overlapping windows both take the interval they share, the calm p95 takes only the
    /// intervals in no window, a fault journaled after an interval it overlaps (its
    /// injection timed when it began) still gets it, and a fault never cleared runs to
    /// the end.
    #[test]
    fn each_window_takes_the_intervals_it_overlaps_and_calm_the_rest() {
        let mut windows = Vec::new();
        let mut reader = ResponseWindows::default();
        let mut t = 0.0;
        let mut interval = |reader: &mut ResponseWindows, windows: &[Window], ms: u64| {
            reader.interval(t, t + 5.0, &responses(ms, 10), windows);
            t += 5.0;
        };
        // 0..100 s calm at 100 ms.
        for _ in 0..20 {
            interval(&mut reader, &windows, 100);
        }
        // Fault 0 from 100 s to 112 s (three intervals: 100-105, 105-110, 110-115) at 900 ms;
        // fault 1 from 108 s, never cleared; its injection read only after 110-115 s.
        windows.push(Window {
            fault: 0,
            from: 100.0,
            to: None,
        });
        interval(&mut reader, &windows, 900);
        interval(&mut reader, &windows, 900);
        interval(&mut reader, &windows, 900);
        windows[0].to = Some(112.0);
        windows.push(Window {
            fault: 1,
            from: 108.0,
            to: None,
        });
        // Then 115..400 s at 300 ms, all in fault 1's window.
        for _ in 0..57 {
            interval(&mut reader, &windows, 300);
        }
        let p95s = reader.finish(&windows, 400.0);
        assert_eq!(p95s.calm_ms, p95_of(&[(100, 200)]));
        assert_eq!(
            p95s.during_ms,
            vec![
                (0, p95_of(&[(900, 30)])),
                (1, p95_of(&[(900, 20), (300, 570)]))
            ]
        );
    }

    /// A window closed long ago has its p95 and no counts kept; a run with no response
    /// anywhere has no p95.
    #[test]
    fn a_closed_window_keeps_only_its_p95() {
        let windows = [Window {
            fault: 3,
            from: 10.0,
            to: Some(20.0),
        }];
        let mut reader = ResponseWindows::default();
        for step in 0..100 {
            let from = f64::from(step) * 5.0;
            reader.interval(from, from + 5.0, &responses(50, 1), &windows);
        }
        assert!(reader.during.is_empty());
        assert_eq!(reader.done, vec![(3, Some(50.0))]);
        assert_eq!(reader.pending.len(), 24);
        let p95s = reader.finish(&windows, 500.0);
        assert_eq!(p95s.calm_ms, Some(50.0));
        let empty = ResponseWindows::default().finish(&windows, 0.0);
        assert_eq!(empty, ResponseP95s::default());
    }
}
