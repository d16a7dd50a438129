//! `[observe]`: where the observers watch the fleet (its health, its metrics, the alerts it
//! sends, its temp dir, its log and its process), and how often. Everything has a default
//! for the embedded fleet; an external fleet is only watched where the scenario says.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::faults::SeriesSelector;

/// How often health is probed when `health_interval` is not given.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe may take when `health_timeout` is not given.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How often `/metrics` is scraped when `scrape_interval` is not given.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the temp dir is walked when `temp_dir_interval` is not given.
pub const DEFAULT_TEMP_DIR_INTERVAL: Duration = Duration::from_secs(10);
/// The series `/metrics` gives the fleet's resident memory in when `rss_metric` is not
/// given: the Prometheus client libraries' standard name.
pub const DEFAULT_RSS_METRIC: &str = "process_resident_memory_bytes";
/// The series `/metrics` gives the bytes in the fleet's temp dir in when `temp_dir_metric`
/// is not given: the reference fleet's name.
pub const DEFAULT_TEMP_DIR_METRIC: &str = "temp_dir_bytes";

/// `[observe]`, validated. `None` means "the embedded fleet's, or nothing for another
/// fleet"; the observers fill the embedded fleet's in when the run starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserveSettings {
    /// `GET` every `health_interval`; 2xx is healthy.
    pub health_url: Option<url::Url>,
    pub health_interval: Duration,
    /// A probe not answered within this is unhealthy.
    pub health_timeout: Duration,
    /// Prometheus text, for the faults' metric `detect` rules and `record`.
    pub metrics_url: Option<url::Url>,
    pub scrape_interval: Duration,
    /// Series journaled (in one `metrics` record at most every 10 s), in file order.
    pub record: Vec<RecordedSeries>,
    /// Where the alert receiver listens for an external fleet (loopback only). The embedded
    /// fleet's receiver is always on a free loopback port the harness wires itself.
    pub alerts_listen: Option<SocketAddr>,
    /// The fleet's temp dir, walked every `temp_dir_interval`.
    pub temp_dir: Option<PathBuf>,
    pub temp_dir_interval: Duration,
    /// The fleet's log: the file `{ log = "…" }` detect rules with no `file` read.
    pub log_file: Option<PathBuf>,
    /// Where `/metrics` gives the fleet's resident memory (`rss_metric`): a fleet that names
    /// it its own way can still be graded for memory growth.
    pub rss_metric: RecordedSeries,
    /// Where `/metrics` gives the bytes in the fleet's temp dir (`temp_dir_metric`).
    pub temp_dir_metric: RecordedSeries,
    /// How the process of a fleet the harness did not start is watched (`process`), so its
    /// crashes are seen; None: it is not (the harness watches a fleet it started itself).
    pub process: Option<ProcessWatch>,
}

/// `[observe] process`: how a crash of a fleet the harness did not start is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessWatch {
    /// `{ pid_file = "PATH" }`: the process whose pid the file holds, read at each sample:
    /// its RSS and CPU from `/proc`, its exit (a crash: the harness never stops it), a new
    /// pid in the file (a restart).
    PidFile(PathBuf),
    /// `{ health = true }`: the health URL refusing connections after it answered is a
    /// crash (nothing listens any more); answering again is a restart.
    Health,
}

impl Default for ObserveSettings {
    fn default() -> Self {
        ObserveSettings {
            health_url: None,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            metrics_url: None,
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            record: Vec::new(),
            alerts_listen: None,
            temp_dir: None,
            temp_dir_interval: DEFAULT_TEMP_DIR_INTERVAL,
            log_file: None,
            rss_metric: RecordedSeries::named(DEFAULT_RSS_METRIC),
            temp_dir_metric: RecordedSeries::named(DEFAULT_TEMP_DIR_METRIC),
            process: None,
        }
    }
}

/// One `record` entry (or `rss_metric`, `temp_dir_metric`): the selector, and its text as
/// written (the key it is journaled under).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSeries {
    pub text: String,
    pub selector: SeriesSelector,
}

impl RecordedSeries {
    /// The series with this name, whatever its labels.
    pub fn named(name: &str) -> RecordedSeries {
        RecordedSeries {
            text: name.to_owned(),
            selector: SeriesSelector {
                name: name.to_owned(),
                labels: Vec::new(),
            },
        }
    }
}
