//! Phase one: serde types close to the file. Every value phase two checks keeps its span so
//! an error can point at it; unknown keys are refused here, at the key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type Value = Spanned<toml::Value>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    pub seed: Option<Spanned<i64>>,
    pub target: Option<Spanned<RawTarget>>,
    pub load: Option<Spanned<RawLoad>>,
    #[serde(default)]
    pub calls: RawCalls,
    #[serde(default)]
    pub scripts: Vec<Spanned<RawScript>>,
    pub slo: Option<RawSlo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub fleet: Option<Spanned<String>>,
    pub stream_url: Option<Spanned<String>>,
    pub webhook_url: Option<Spanned<String>>,
    pub auth_token_env: Option<Spanned<String>>,
    pub custom_parameters: Option<Spanned<BTreeMap<String, String>>>,
    pub allow_hosts: Option<Vec<String>>,
    pub reply_delay: Option<Value>,
    pub reply_length: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    pub stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
    pub calls_per_minute: Option<Value>,
    pub duration: Option<Value>,
    pub arrivals: Option<Spanned<String>>,
    pub max_concurrent: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub ramp_to: Option<Spanned<i64>>,
    pub over: Option<Value>,
    pub hold: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalls {
    pub connect_timeout: Option<Value>,
    pub turn_timeout: Option<Value>,
    pub reply_silence: Option<Value>,
    pub wait_for_greeting: Option<bool>,
    pub max_call_duration: Option<Value>,
    pub fixtures: Option<Vec<Spanned<String>>>,
    pub synthetic: Option<RawSynthetic>,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSynthetic {
    pub count: Option<Spanned<i64>>,
    pub min: Option<Value>,
    pub max: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScript {
    pub name: Option<String>,
    pub weight: Option<Spanned<i64>>,
    pub turns: Option<Value>,
    pub steps: Option<Vec<Spanned<RawStep>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub say: Option<Spanned<String>>,
    pub dtmf: Option<Spanned<String>>,
    pub pause: Option<Value>,
    pub hangup: Option<bool>,
    pub listen: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    pub call_success: Option<Spanned<String>>,
    pub response_p95: Option<Spanned<String>>,
    pub response_p99: Option<Spanned<String>>,
    pub first_audio_p95: Option<Spanned<String>>,
    pub pacing_jitter_p99: Option<Spanned<String>>,
}
