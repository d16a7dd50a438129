//! Phase two's result: the validated scenario, and the seeded choices made from it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// The file it came from; relative paths in it are relative to its directory.
    pub path: PathBuf,
    /// Same seed, same schedule and same call choices.
    pub seed: u64,
    pub target: Target,
    /// Hosts calls may go to (loopback by default): checked for the scenario's URLs and for
    /// stream URLs found in TwiML at run time.
    pub allow_hosts: Vec<String>,
    pub load: Load,
    pub calls: CallSettings,
    pub scripts: Vec<CallScript>,
    pub slo: Slos,
}

/// The fleet under test.
#[derive(Debug, Clone)]
pub enum Target {
    /// The harness starts `voxsoak sink` itself.
    Sink(SinkOptions),
    /// A fleet already running.
    External(ExternalTarget),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkOptions {
    pub reply_delay: Duration,
    pub reply_length: Duration,
}

#[derive(Debug, Clone)]
pub struct ExternalTarget {
    pub endpoint: Endpoint,
    /// The NAME of the environment variable that holds the Twilio auth token.
    pub auth_token_env: Option<String>,
    pub custom_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Stream(url::Url),
    Webhook(url::Url),
}

/// When calls start.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Closed model: concurrency follows ramps and holds, from 0.
    Stages(Vec<Stage>),
    /// Open model: calls start on schedule whatever the fleet does.
    Arrival(ArrivalRate),
}

/// A stage ends at concurrency `to` after `duration` (a hold keeps the previous level).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub to: u32,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArrivalRate {
    pub calls_per_minute: f64,
    pub duration: Duration,
    pub pattern: ArrivalPattern,
    /// Above this many calls in progress, a new call is dropped and counted.
    pub max_concurrent: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalPattern {
    Uniform,
    Poisson,
}

impl Load {
    pub fn duration(&self) -> Duration {
        match self {
            Load::Stages(stages) => stages.iter().map(|stage| stage.duration).sum(),
            Load::Arrival(rate) => rate.duration,
        }
    }

    pub fn peak_concurrency(&self) -> u32 {
        match self {
            Load::Stages(stages) => stages.iter().map(|stage| stage.to).max().unwrap_or(0),
            Load::Arrival(rate) => rate.max_concurrent,
        }
    }

    /// The concurrency the stages ask for at `t` (linear within a ramp; 0 after the end).
    pub fn concurrency_at(&self, t: Duration) -> u32 {
        let Load::Stages(stages) = self else { return 0 };
        let mut start = Duration::ZERO;
        let mut from = 0u32;
        for stage in stages {
            let end = start + stage.duration;
            if t < end {
                let fraction = (t - start).as_secs_f64() / stage.duration.as_secs_f64();
                let level = f64::from(from) + (f64::from(stage.to) - f64::from(from)) * fraction;
                return level.round() as u32;
            }
            start = end;
            from = stage.to;
        }
        0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallSettings {
    pub connect_timeout: Duration,
    /// The agent must start replying within this after the caller stops.
    pub turn_timeout: Duration,
    /// A reply with no closing mark is over after this much silence.
    pub reply_silence: Duration,
    pub max_call_duration: Duration,
    pub wait_for_greeting: bool,
    /// Absolute, sorted, de-duplicated.
    pub fixtures: Vec<PathBuf>,
    pub synthetic: SyntheticPool,
    pub from: String,
    pub to: String,
}

/// Seeded synthetic utterances, generated once per run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticPool {
    pub count: u32,
    pub min: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallScript {
    pub name: String,
    pub weight: u32,
    pub body: ScriptBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScriptBody {
    /// Each turn: say a random utterance, listen.
    Turns {
        min: u32,
        max: u32,
    },
    Steps(Vec<Step>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Say {
        utterance: UtteranceRef,
        listen: bool,
    },
    Dtmf {
        digits: String,
        listen: bool,
    },
    Pause(Duration),
    Hangup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtteranceRef {
    Random,
    Synthetic,
    /// Index into `calls.fixtures`.
    Fixture(usize),
}

/// Thresholds the run is graded against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slos {
    pub call_success_min_pct: Option<f64>,
    pub response_p95_max: Option<Duration>,
    pub response_p99_max: Option<Duration>,
    pub first_audio_p95_max: Option<Duration>,
    pub pacing_jitter_p99_max: Option<Duration>,
}

/// What call `index` will do.
#[derive(Debug, Clone, PartialEq)]
pub struct CallChoice {
    pub script: usize,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtteranceSource {
    Fixture(usize),
    /// Index into [`Scenario::synthetic_specs`].
    Synthetic(usize),
}

/// splitmix64: spreads (seed, index) pairs over the whole seed space.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    if n <= 1 { 0 } else { rng.next_u64() % n }
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Scenario {
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        super::validate::host_in(&self.allow_hosts, host)
    }

    /// The synthetic pool: (length, seed) of each utterance, from the scenario seed.
    pub fn synthetic_specs(&self) -> Vec<(Duration, u64)> {
        let pool = self.calls.synthetic;
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ 0x5157_4E54));
        let span = pool.max.saturating_sub(pool.min).as_millis() as u64;
        (0..pool.count)
            .map(|_| {
                let ms = pool.min.as_millis() as u64 + below(&mut rng, span + 1);
                let ms = (ms / 20).max(1) * 20;
                (Duration::from_millis(ms), rng.next_u64())
            })
            .collect()
    }

    /// What call `index` does: a function of the seed and the index only, so a call's choice
    /// does not depend on how many calls ran before it.
    pub fn choose_call(&self, index: u64) -> CallChoice {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ mix(index)));
        let total: u64 = self.scripts.iter().map(|s| u64::from(s.weight)).sum();
        let mut pick = below(&mut rng, total);
        let script = self
            .scripts
            .iter()
            .position(|s| {
                let weight = u64::from(s.weight);
                if pick < weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .unwrap_or(0);
        let random_utterance = |rng: &mut ChaCha8Rng| {
            if self.calls.fixtures.is_empty() {
                UtteranceSource::Synthetic(
                    below(rng, u64::from(self.calls.synthetic.count)) as usize
                )
            } else {
                UtteranceSource::Fixture(below(rng, self.calls.fixtures.len() as u64) as usize)
            }
        };
        let steps = match &self.scripts[script].body {
            ScriptBody::Turns { min, max } => {
                let turns = min + below(&mut rng, u64::from(max - min) + 1) as u32;
                (0..turns)
                    .map(|_| PlannedStep::Say {
                        utterance: random_utterance(&mut rng),
                        listen: true,
                    })
                    .collect()
            }
            ScriptBody::Steps(steps) => steps
                .iter()
                .map(|step| match step {
                    Step::Say { utterance, listen } => PlannedStep::Say {
                        utterance: match utterance {
                            UtteranceRef::Random => random_utterance(&mut rng),
                            UtteranceRef::Synthetic => UtteranceSource::Synthetic(below(
                                &mut rng,
                                u64::from(self.calls.synthetic.count),
                            )
                                as usize),
                            UtteranceRef::Fixture(index) => UtteranceSource::Fixture(*index),
                        },
                        listen: *listen,
                    },
                    Step::Dtmf { digits, listen } => PlannedStep::Dtmf {
                        digits: digits.clone(),
                        listen: *listen,
                    },
                    Step::Pause(pause) => PlannedStep::Pause(*pause),
                    Step::Hangup => PlannedStep::Hangup,
                })
                .collect(),
        };
        CallChoice { script, steps }
    }

    /// Start times of the open model's calls, relative to the run start; empty for stages.
    pub fn arrival_offsets(&self) -> impl Iterator<Item = Duration> + use<> {
        let (rate, duration, pattern) = match &self.load {
            Load::Arrival(rate) => (rate.calls_per_minute / 60.0, rate.duration, rate.pattern),
            Load::Stages(_) => (0.0, Duration::ZERO, ArrivalPattern::Uniform),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ 0xA771_7A15));
        let mut at = 0.0f64;
        let mut count = 0u64;
        std::iter::from_fn(move || {
            if rate <= 0.0 {
                return None;
            }
            let offset = match pattern {
                ArrivalPattern::Uniform => count as f64 / rate,
                ArrivalPattern::Poisson => {
                    if count > 0 {
                        at += -(1.0 - unit(&mut rng)).ln() / rate;
                    }
                    at
                }
            };
            count += 1;
            let offset = Duration::from_secs_f64(offset);
            (offset < duration).then_some(offset)
        })
    }
}
