//! Load shapes that expand into plain [`Stage`]s when a scenario is read: a diurnal day
//! and a spike. The load driver only ever sees ramps and holds, so `--time-scale`,
//! `plan` and the progress line treat them like any other stage.

use std::time::Duration;

use super::Stage;

/// One day of the diurnal curve.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// The levels a diurnal stage moves between (concurrent calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayLevels {
    /// The night's level (00:00 to 05:00).
    pub trough: u32,
    /// The daytime level (07:00 to 08:00, 11:00 to 18:00).
    pub base: u32,
    /// The morning peak (08:00 to 10:00).
    pub peak: u32,
}

impl DayLevels {
    /// `base` with the defaults for what is not given: a peak of three times the base
    /// (the seed run's 8–10 AM spike) and a trough of a quarter of it, at least one call
    /// so the fleet is never left idle.
    pub fn with_defaults(base: u32, peak: Option<u32>, trough: Option<u32>) -> Self {
        DayLevels {
            base,
            peak: peak.unwrap_or_else(|| base.saturating_mul(3)),
            trough: trough.unwrap_or_else(|| (base.div_ceil(4)).max(1).min(base)),
        }
    }

    /// The evening's level on the way down, halfway between base and trough.
    fn evening(self) -> u32 {
        self.trough + (self.base - self.trough.min(self.base)) / 2
    }
}

/// The reference day as (minutes after midnight, level) knots, linear between them:
/// night trough until 05:00, up to the base by 07:00, the morning peak from 08:00 to 10:00,
/// the base through the working day, down in the evening to the trough at midnight.
fn knots(levels: DayLevels) -> [(u64, u32); 9] {
    [
        (0, levels.trough),
        (5 * 60, levels.trough),
        (7 * 60, levels.base),
        (8 * 60, levels.peak),
        (10 * 60, levels.peak),
        (11 * 60, levels.base),
        (18 * 60, levels.base),
        (22 * 60, levels.evening()),
        (24 * 60, levels.trough),
    ]
}

/// The curve's level `into_day` after midnight (interpolated, rounded to a call).
pub fn level_at(levels: DayLevels, into_day: Duration) -> u32 {
    let minutes = (into_day.as_secs_f64() / 60.0).rem_euclid(24.0 * 60.0);
    let knots = knots(levels);
    for pair in knots.windows(2) {
        let ((from_min, from), (to_min, to)) = (pair[0], pair[1]);
        if minutes <= to_min as f64 {
            let progress = (minutes - from_min as f64) / (to_min - from_min) as f64;
            let level = f64::from(from) + (f64::from(to) - f64::from(from)) * progress;
            return level.round() as u32;
        }
    }
    levels.trough
}

/// How long a diurnal stage takes to move from the level before it to the night's.
const SETTLE: Duration = Duration::from_secs(60);

/// A diurnal stage of `length` (it starts at midnight; a length over a day repeats the
/// day) as ramps between the day's knots: first from the previous stage's level to the
/// night's within a minute (a tenth of `length` if shorter), the last cut at `length`.
pub fn diurnal(levels: DayLevels, length: Duration) -> Vec<Stage> {
    let knots = knots(levels);
    let settle = SETTLE.min(length / 10);
    let mut stages = vec![Stage {
        to: levels.trough,
        duration: settle,
    }];
    let mut done = settle;
    let mut day_start = Duration::ZERO;
    while done < length {
        for &(minutes, level) in &knots[1..] {
            let at = day_start + Duration::from_secs(minutes * 60);
            if at >= length {
                stages.push(Stage {
                    to: level_at(levels, length - day_start),
                    duration: length - done,
                });
                return stages;
            }
            stages.push(Stage {
                to: level,
                duration: at - done,
            });
            done = at;
        }
        day_start += DAY;
    }
    stages
}

/// A spike: from `from` up to `to` for `length`, then back to `from`. The jumps take a
/// tenth of the length, at most a second each, inside `length`.
pub fn spike(from: u32, to: u32, length: Duration) -> Vec<Stage> {
    let edge = (length / 10).min(Duration::from_secs(1));
    vec![
        Stage { to, duration: edge },
        Stage {
            to,
            duration: length - edge * 2,
        },
        Stage {
            to: from,
            duration: edge,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Load;

    const LEVELS: DayLevels = DayLevels {
        trough: 5,
        base: 20,
        peak: 60,
    };

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    #[test]
    fn defaults_are_three_times_the_base_at_peak_and_a_quarter_at_night() {
        assert_eq!(DayLevels::with_defaults(20, None, None), LEVELS);
        assert_eq!(DayLevels::with_defaults(1, None, None).trough, 1);
        assert_eq!(DayLevels::with_defaults(2, Some(4), Some(0)).trough, 0);
    }

    #[test]
    fn a_day_has_a_night_trough_and_a_morning_peak() {
        let load = Load::Stages(diurnal(LEVELS, DAY));
        assert_eq!(load.duration(), DAY);
        assert_eq!(
            load.concurrency_at(Duration::ZERO),
            0,
            "from the level before"
        );
        assert_eq!(load.concurrency_at(Duration::from_secs(60)), 5, "night");
        assert_eq!(load.concurrency_at(hours(3)), 5, "night");
        assert_eq!(load.concurrency_at(hours(9)), 60, "morning peak");
        assert_eq!(load.concurrency_at(hours(14)), 20, "working day");
        assert_eq!(load.concurrency_at(hours(22)), 12, "evening");
        assert_eq!(load.peak_concurrency(), 60);
        // The stages' levels and the curve agree at every hour.
        for hour in 1..24 {
            assert_eq!(
                load.concurrency_at(hours(hour)),
                level_at(LEVELS, hours(hour)),
                "{hour}:00"
            );
        }
    }

    #[test]
    fn longer_runs_repeat_the_day_and_shorter_ones_are_cut() {
        let three_days = Load::Stages(diurnal(LEVELS, DAY * 3));
        assert_eq!(three_days.duration(), DAY * 3);
        assert_eq!(three_days.concurrency_at(hours(48 + 9)), 60);
        assert_eq!(three_days.concurrency_at(hours(72 - 21)), 5);

        let morning = diurnal(LEVELS, hours(9));
        assert_eq!(
            morning.iter().map(|stage| stage.duration).sum::<Duration>(),
            hours(9)
        );
        assert_eq!(morning.last().unwrap().to, 60, "cut inside the peak");
        let half_past_five = diurnal(LEVELS, Duration::from_secs(5 * 3600 + 1800));
        assert_eq!(half_past_five.last().unwrap().to, 9, "cut on the way up");
    }

    #[test]
    fn a_spike_jumps_holds_and_comes_back_within_its_length() {
        let stages = spike(10, 40, Duration::from_secs(60));
        let load = Load::Stages(
            [Stage {
                to: 10,
                duration: Duration::from_secs(10),
            }]
            .into_iter()
            .chain(stages)
            .collect(),
        );
        assert_eq!(load.duration(), Duration::from_secs(70));
        assert_eq!(load.concurrency_at(Duration::from_secs(12)), 40);
        assert_eq!(load.concurrency_at(Duration::from_secs(68)), 40);
        assert_eq!(load.concurrency_at(Duration::from_secs_f64(69.9)), 13);
        let short = spike(0, 5, Duration::from_secs(2));
        assert_eq!(short[0].duration, Duration::from_millis(200));
    }
}
