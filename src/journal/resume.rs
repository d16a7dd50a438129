//! Where a run whose harness died stopped, read from its journal: what `voxsoak resume`
//! needs to go on with the same schedule.
//!
//! The journal's clock (`t_s`) is the harness's own: a resumed run continues it from the
//! last record the killed harness wrote, so the time the harness was away is not on it at
//! all. Uptime, recovery and growth are measured on that clock and cannot count the gap
//! against the fleet; the gap itself is journaled (`harness_downtime`, with its wall-clock
//! ends and length) and shown in the summary.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::signal::str_of;

/// An injection the killed harness left in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFault {
    pub fault: String,
    pub kind: String,
    pub occurrence: u64,
    pub injected_at_s: f64,
}

/// Where a run stopped, and what it was.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePoint {
    pub run_dir: PathBuf,
    pub run_id: String,
    /// The scenario file as the run named it; resolved against `cwd`, the directory the
    /// run was started from, when relative.
    pub scenario_path: PathBuf,
    pub seed: u64,
    pub time_scale: f64,
    /// The whole schedule, in real seconds.
    pub planned_s: f64,
    /// Production bugs the embedded fleet ran with (scenario and `--fleet-bug`).
    pub fleet_bugs: Vec<String>,
    /// The last record's `t_s`: where the schedule goes on from.
    pub last_t_s: f64,
    /// The last record's wall clock: where the harness downtime starts.
    pub last_at: Option<SystemTime>,
    /// Injections in effect when the harness died (injected, never cleared).
    pub open_faults: Vec<OpenFault>,
    /// Calls the killed harness started (the next call gets the next index).
    pub calls_started: u64,
    /// Calls it saw end (dropped ones included): the rest were in progress when it died.
    pub calls_ended: u64,
    /// Times the run was resumed before.
    pub resumes: u64,
}

/// Why a run directory cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no run_started record; this is not the journal of a voxsoak run", path.display())]
    NotARun { path: PathBuf },
    #[error(
        "{}: the run ended at {t_s:.1}s (run_ended); there is nothing to resume (re-grade it with `voxsoak report`)",
        path.display()
    )]
    Ended { path: PathBuf, t_s: f64 },
}

/// Reads where the run in `run_dir` stopped from its `journal.jsonl`.
pub fn read(run_dir: &Path) -> Result<ResumePoint, ResumeError> {
    let path = run_dir.join("journal.jsonl");
    let mut point = ResumePoint {
        run_dir: run_dir.to_path_buf(),
        run_id: String::new(),
        scenario_path: PathBuf::new(),
        seed: 0,
        time_scale: 1.0,
        planned_s: 0.0,
        fleet_bugs: Vec::new(),
        last_t_s: 0.0,
        last_at: None,
        open_faults: Vec::new(),
        calls_started: 0,
        calls_ended: 0,
        resumes: 0,
    };
    let mut seen = Seen::default();
    super::read_each(&path, |record| point.add(record, &mut seen)).map_err(|source| {
        ResumeError::Read {
            path: path.clone(),
            source,
        }
    })?;
    if !seen.started {
        return Err(ResumeError::NotARun { path });
    }
    if let Some(t_s) = seen.ended {
        return Err(ResumeError::Ended { path, t_s });
    }
    if let Some(cwd) = seen.cwd
        && point.scenario_path.is_relative()
    {
        point.scenario_path = cwd.join(&point.scenario_path);
    }
    Ok(point)
}

/// What [`read`] keeps besides the point itself.
#[derive(Debug, Default)]
struct Seen {
    started: bool,
    /// `run_started` named the `--fleet-bug`s (older journals: the `fleet` record).
    bugs_named: bool,
    ended: Option<f64>,
    cwd: Option<PathBuf>,
}

impl ResumePoint {
    fn add(&mut self, record: &Value, seen: &mut Seen) {
        let event = record.get("event").and_then(Value::as_str).unwrap_or("");
        if let Some(t_s) = record.get("t_s").and_then(Value::as_f64) {
            self.last_t_s = self.last_t_s.max(t_s);
        }
        if let Some(at) = record.get("at").and_then(Value::as_str) {
            self.last_at = humantime::parse_rfc3339(at).ok().or(self.last_at);
        }
        match event {
            "run_started" => {
                seen.started = true;
                self.read_run_started(record);
                seen.bugs_named = record.get("fleet_bugs").is_some();
                seen.cwd = record.get("cwd").and_then(Value::as_str).map(PathBuf::from);
            }
            "fleet" if !seen.bugs_named => {
                if let Some(bugs) = record.get("bugs").and_then(Value::as_array) {
                    self.fleet_bugs = strings(bugs);
                }
            }
            "interval" => {
                let mut interval = super::calls::Totals::default();
                // An unreadable interval is the grader's to report; here it counts nothing.
                if interval.add_record(record).is_ok() {
                    self.calls_started += interval.started;
                    self.calls_ended += interval.ended() + interval.dropped;
                }
            }
            "fault_injected" => self.open_faults.push(OpenFault {
                fault: str_of(record, "fault"),
                kind: str_of(record, "kind"),
                occurrence: record
                    .get("occurrence")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                injected_at_s: record.get("t_s").and_then(Value::as_f64).unwrap_or(0.0),
            }),
            "fault_cleared" | "fault_clear_failed" | "fault_failed" => {
                let fault = str_of(record, "fault");
                let occurrence = record
                    .get("occurrence")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                self.open_faults
                    .retain(|open| open.fault != fault || open.occurrence != occurrence);
            }
            "run_resumed" => self.resumes += 1,
            "run_ended" => seen.ended = record.get("t_s").and_then(Value::as_f64),
            _ => {}
        }
    }

    fn read_run_started(&mut self, record: &Value) {
        self.run_id = str_of(record, "run_id");
        self.scenario_path = PathBuf::from(str_of(record, "scenario_path"));
        self.seed = record.get("seed").and_then(Value::as_u64).unwrap_or(0);
        self.time_scale = record
            .get("time_scale")
            .and_then(Value::as_f64)
            .filter(|scale| scale.is_finite() && *scale >= 1.0)
            .unwrap_or(1.0);
        self.planned_s = record
            .get("planned_s")
            .and_then(Value::as_f64)
            .filter(|planned| planned.is_finite() && *planned >= 0.0)
            .unwrap_or(0.0);
        if let Some(bugs) = record.get("fleet_bugs").and_then(Value::as_array) {
            self.fleet_bugs = strings(bugs);
        }
    }

    /// Where the schedule goes on from.
    pub fn at(&self) -> Duration {
        Duration::from_secs_f64(self.last_t_s.max(0.0))
    }

    /// Calls in progress when the harness died.
    pub fn calls_lost(&self) -> u64 {
        self.calls_started.saturating_sub(self.calls_ended)
    }

    /// How long the harness was away, by the wall clock (zero if the clock went back).
    pub fn downtime(&self, now: SystemTime) -> Duration {
        self.last_at
            .and_then(|at| now.duration_since(at).ok())
            .unwrap_or_default()
    }
}

fn strings(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(dir: &Path, lines: &[&str]) {
        std::fs::write(dir.join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
    }

    const STARTED: &str = r#"{"event":"run_started","t_s":0.0,"at":"2026-12-05T10:00:00.000Z","run_id":"r1","scenario_path":"scenarios/smoke.toml","cwd":"/work/here","seed":7,"time_scale":4.0,"planned_s":120.0,"fleet_bugs":["no-backoff"]}"#;

    #[test]
    fn a_killed_run_resumes_where_its_journal_stops_with_its_open_faults() {
        let dir = tempfile::tempdir().unwrap();
        journal(
            dir.path(),
            &[
                STARTED,
                r#"{"event":"interval","t_s":5.0,"at":"2026-12-05T10:00:05.000Z","started":4,"outcomes":{"completed":2}}"#,
                r#"{"event":"fault_injected","t_s":10.0,"at":"2026-12-05T10:00:10.000Z","fault":"tts","kind":"tts_429","occurrence":1}"#,
                r#"{"event":"fault_injected","t_s":12.0,"at":"2026-12-05T10:00:12.000Z","fault":"leak","kind":"temp_file_leak","occurrence":1}"#,
                r#"{"event":"fault_cleared","t_s":14.0,"at":"2026-12-05T10:00:14.000Z","fault":"tts","kind":"tts_429","occurrence":1}"#,
                r#"{"event":"interval","t_s":15.0,"at":"2026-12-05T10:00:15.000Z","started":3}"#,
                // Cut short by the kill.
                r#"{"event":"health","t_s":16.0,"#,
            ],
        );
        let point = read(dir.path()).unwrap();
        assert_eq!(point.run_id, "r1");
        assert_eq!(
            point.scenario_path,
            PathBuf::from("/work/here/scenarios/smoke.toml")
        );
        assert_eq!(
            (point.seed, point.time_scale, point.planned_s),
            (7, 4.0, 120.0)
        );
        assert_eq!(point.fleet_bugs, vec!["no-backoff".to_string()]);
        assert_eq!(point.last_t_s, 15.0);
        assert_eq!(point.calls_started, 7);
        assert_eq!(point.calls_lost(), 5);
        assert_eq!(
            point.open_faults,
            vec![OpenFault {
                fault: "leak".into(),
                kind: "temp_file_leak".into(),
                occurrence: 1,
                injected_at_s: 12.0
            }]
        );
        let later = humantime::parse_rfc3339("2026-12-05T10:01:15Z").unwrap();
        assert_eq!(point.downtime(later), Duration::from_secs(60));
    }

    #[test]
    fn an_ended_run_or_a_journal_of_nothing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        journal(
            dir.path(),
            &[
                STARTED,
                r#"{"event":"run_ended","t_s":120.0,"at":"2026-12-05T10:02:00.000Z"}"#,
            ],
        );
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("the run ended at 120.0s"), "{error}");
        journal(dir.path(), &[r#"{"event":"interval","t_s":1.0}"#]);
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("not the journal of a voxsoak run"),
            "{error}"
        );
        let missing = read(&dir.path().join("nowhere")).unwrap_err().to_string();
        assert!(missing.contains("cannot read"), "{missing}");
    }
}
