//! The seeded schedule: synthetic utterances, each call's script and steps, and open-model
//! arrival times. Each comes from its own random stream keyed by (seed, purpose, index),
//! so call 1234's choice is the same whether it is the first call a shard runs or the
//! last, and adding a synthetic utterance does not reshuffle the arrivals.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ArrivalPattern, Load, Scenario, ScriptBody, Step, UtteranceRef};

/// Separate random streams per purpose.
#[derive(Clone, Copy)]
enum Purpose {
    Synthetic = 1,
    Call = 2,
    Arrivals = 3,
}

/// A generator keyed by the whole (seed, purpose, index) triple: ChaCha is a good PRF over
/// its key, so distinct triples give unrelated streams with no mixing step to get wrong.
fn rng(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

use crate::audio::FRAME;

/// What one call will do, decided before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallChoice {
    /// Index into [`Scenario::scripts`].
    pub script: usize,
    pub steps: Vec<PlannedStep>,
}

/// A [`Step`] with every random choice made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedStep {
    Say {
        utterance: UtteranceSource,
        listen: bool,
    },
    Dtmf {
        digits: String,
        listen: bool,
    },
    Pause(Duration),
    Hangup,
}

/// The audio a `Say` step plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtteranceSource {
    /// Index into [`CallSettings::fixtures`](super::CallSettings::fixtures).
    Fixture(usize),
    /// Index into [`Scenario::synthetic_specs`].
    Synthetic(usize),
}

impl Scenario {
    /// The synthetic pool: `(length, seed)` per utterance, lengths uniform in
    /// `[min, max]` and rounded to 20 ms frames, each with its own seed for the audio
    /// generator. Depends only on the scenario seed and the pool settings.
    pub fn synthetic_specs(&self) -> Vec<(Duration, u64)> {
        let pool = self.calls.synthetic;
        let mut rng = rng(self.seed, Purpose::Synthetic, 0);
        let (min, max) = (pool.min.as_micros(), pool.max.as_micros());
        let frame = FRAME.as_micros();
        (0..pool.count)
            .map(|_| {
                let micros = rng.random_range(min..=max);
                let frames = ((micros + frame / 2) / frame).max(1);
                let length =
                    Duration::from_micros(u64::try_from(frames * frame).unwrap_or(u64::MAX));
                (length, rng.random::<u64>())
            })
            .collect()
    }

    /// The script and concrete steps of call number `call_index`; a pure function of the
    /// seed and the index.
    pub fn choose_call(&self, call_index: u64) -> CallChoice {
        let mut rng = rng(self.seed, Purpose::Call, call_index);
        let total: u64 = self
            .scripts
            .iter()
            .map(|script| u64::from(script.weight))
            .sum();
        let mut ticket = rng.random_range(0..total.max(1));
        let script = self
            .scripts
            .iter()
            .position(|script| {
                let weight = u64::from(script.weight);
                if ticket < weight {
                    true
                } else {
                    ticket -= weight;
                    false
                }
            })
            .unwrap_or(0);
        let body = &self.scripts[script].body;
        let turns = match *body {
            ScriptBody::Turns { min, max } => rng.random_range(min..=max),
            ScriptBody::Steps(_) => 0,
        };
        let fixtures = self.calls.fixtures.len();
        let synthetic = self.calls.synthetic.count.max(1) as usize;
        let mut pick = |utterance: UtteranceRef| match utterance {
            UtteranceRef::Fixture(index) => UtteranceSource::Fixture(index),
            UtteranceRef::Random if fixtures > 0 => {
                UtteranceSource::Fixture(rng.random_range(0..fixtures))
            }
            UtteranceRef::Random | UtteranceRef::Synthetic => {
                UtteranceSource::Synthetic(rng.random_range(0..synthetic))
            }
        };
        let steps = match body {
            ScriptBody::Turns { .. } => (0..turns)
                .map(|_| PlannedStep::Say {
                    utterance: pick(UtteranceRef::Random),
                    listen: true,
                })
                .collect(),
            ScriptBody::Steps(steps) => steps
                .iter()
                .map(|step| match step {
                    Step::Say { utterance, listen } => PlannedStep::Say {
                        utterance: pick(*utterance),
                        listen: *listen,
                    },
                    Step::Dtmf { digits, listen } => PlannedStep::Dtmf {
                        digits: digits.clone(),
                        listen: *listen,
                    },
                    Step::Pause(duration) => PlannedStep::Pause(*duration),
                    Step::Hangup => PlannedStep::Hangup,
                })
                .collect(),
        };
        CallChoice { script, steps }
    }

    /// Start offsets of the open model's calls, relative to the run start, all before
    /// [`ArrivalRate::duration`](super::ArrivalRate::duration). Uniform: one every
    /// `60 / calls_per_minute` seconds from 0. Poisson: exponential gaps with that mean,
    /// the first one after 0. Empty for stages.
    pub fn arrival_offsets(&self) -> ArrivalOffsets {
        let Load::Arrival(rate) = &self.load else {
            return ArrivalOffsets {
                limit: 0.0,
                gap: 0.0,
                kind: Kind::Empty,
            };
        };
        let gap = 60.0 / rate.calls_per_minute;
        let kind = match rate.pattern {
            ArrivalPattern::Uniform => Kind::Uniform { next: 0 },
            ArrivalPattern::Poisson => Kind::Poisson {
                rng: Box::new(rng(self.seed, Purpose::Arrivals, 0)),
                elapsed: 0.0,
            },
        };
        ArrivalOffsets {
            limit: rate.duration.as_secs_f64(),
            gap,
            kind,
        }
    }
}

/// Iterator returned by [`Scenario::arrival_offsets`]; lazy, so a 72-hour schedule costs
/// nothing up front.
#[derive(Debug, Clone)]
pub struct ArrivalOffsets {
    /// Seconds; offsets at or after it are not produced.
    limit: f64,
    /// Mean gap in seconds.
    gap: f64,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Empty,
    /// Offsets are `next * gap`, multiplied rather than summed so rounding does not drift.
    Uniform {
        next: u64,
    },
    Poisson {
        rng: Box<ChaCha8Rng>,
        elapsed: f64,
    },
}

impl Iterator for ArrivalOffsets {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let offset = match &mut self.kind {
            Kind::Empty => return None,
            Kind::Uniform { next } => {
                let offset = *next as f64 * self.gap;
                *next += 1;
                offset
            }
            Kind::Poisson { rng, elapsed } => {
                // 1 - u is in (0, 1], so the logarithm is finite.
                let u: f64 = rng.random();
                *elapsed += -self.gap * (1.0 - u).ln();
                *elapsed
            }
        };
        if offset < self.limit {
            Some(Duration::from_secs_f64(offset))
        } else {
            self.kind = Kind::Empty;
            None
        }
    }
}
