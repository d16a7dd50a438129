//! Watching the fleet from the outside, the way an operator would: its health endpoint,
//! its Prometheus metrics, the alerts it sends, and its process. Observers send
//! [`Observation`]s to one hub ([`hub::run_hub`]), which journals what changed and keeps
//! the transitions the grader needs to tell when the fleet noticed a fault.

pub mod alerts;
pub mod fleet_process;
pub mod health;
pub mod hub;
pub mod process;
pub mod prometheus;

use tokio::time::Instant;

/// One reading of one observer.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub at: Instant,
    pub signal: Signal,
}

impl Observation {
    pub fn now(signal: Signal) -> Self {
        Observation {
            at: Instant::now(),
            signal,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An alert reached the receiver.
    Alert { name: String, firing: bool },
    /// A body the receiver could not read as alerts.
    BadAlert,
    /// One health probe: 2xx is healthy; no answer (`status` None) is not.
    Health {
        healthy: bool,
        status: Option<u16>,
        /// Why, in a line: the first 200 characters of the body, or the error.
        detail: String,
    },
    /// A metric condition of a fault's `detect` rule, evaluated on one scrape.
    Condition {
        index: usize,
        holds: bool,
        value: Option<f64>,
    },
    /// A scrape of the fleet's gauges that matter over long runs.
    Gauges {
        rss_bytes: Option<f64>,
        temp_dir_bytes: Option<f64>,
    },
    /// `/metrics` did not answer or was not Prometheus text.
    ScrapeFailed { reason: String },
}
