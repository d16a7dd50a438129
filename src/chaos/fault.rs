//! One injected fault of any kind, behind one interface: what the scheduler and `voxsoak
//! chaos` drive.
//!
//! A fault kind's action lives in the file of its family, next to its fault object:
//! `standin.rs` (`tts_*`, `llm_*`, `*_tool_params`), `db.rs`, `temp_files.rs`, `proxy.rs`
//! and `process.rs`, each with an `inject_spec` (or `inject`) that takes the scenario's
//! [`FaultSpec`] and what it acts on. Here [`inject`] only finds what that is in the
//! [`FaultEnvironment`] (one arm per [`FaultSpec`] variant), and [`ActiveFault`] forwards
//! confirm and clear to the fault object. What the model knows of a kind (parameters,
//! validation, plan text, default detection, help) is in `crate::scenario::faults`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::db::DbPoolFault;
use super::process::{ProcessKillFault, ProcessStallFault, ProcessTarget};
use super::proxy::{FaultProxy, ProxyFault};
use super::standin::{LlmStandInFault, StandIns, TtsStandInFault};
use super::temp_files::{HarnessFiles, LeakStop, TempFileLeakFault};
use super::{Confirmation, FaultError};
use crate::journal::Journal;
use crate::journal::round_ms;
use crate::scenario::faults::{
    FaultSpec, Occurrence, ProxyFault as ProxySpec, ProxyUpstream, ScheduledFault,
};
use serde_json::json;

/// How many of the calls an LLM fault hit are journaled one by one per injection; the rest
/// are counted.
pub const MAX_JOURNALED_HITS: u64 = 100;

/// What faults act on.
#[derive(Debug)]
pub struct FaultEnvironment {
    pub standins: Option<StandIns>,
    pub proxies: Vec<ProxyEntry>,
    /// Every file the harness creates, removed when the run ends.
    pub files: HarnessFiles,
    pub targets: ChaosTargets,
    /// Part of every leaked file's name (the run id).
    pub tag: String,
    /// Hosts the harness may connect to (`[target] allow_hosts`): a database fault checks
    /// its server against them.
    pub allow_hosts: Vec<String>,
}

/// What the chaos plane needs to know about the fleet once it runs. Its `Debug` never
/// shows the database URL.
#[derive(Clone, Default)]
pub struct ChaosTargets {
    /// The fleet process, when the harness started it (or the pid `voxsoak chaos` was
    /// given).
    pub fleet: Option<ProcessTarget>,
    /// The fleet's database URL (never printed).
    pub database_url: Option<String>,
    /// The fleet's audio temp dir (embedded fleet).
    pub audio_tmp_dir: Option<PathBuf>,
    /// The run's temp root: a file a fault leaks into a directory outside it is written
    /// into the root's ledger with [`crate::cleanup::TempRoot::record_leaked`], so that it
    /// goes with the root, also after a `kill -9` of the harness (`voxsoak clean`). None
    /// for `voxsoak chaos`.
    pub temp_root: Option<crate::cleanup::TempRoot>,
}

impl std::fmt::Debug for ChaosTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosTargets")
            .field("fleet", &self.fleet)
            .field("database_url", &self.database_url.as_ref().map(|_| "…"))
            .field("audio_tmp_dir", &self.audio_tmp_dir)
            .field("temp_root", &self.temp_root)
            .finish()
    }
}

/// A fault proxy started for a run (or for `voxsoak chaos`), and what it stands in front of.
#[derive(Debug)]
pub struct ProxyEntry {
    pub upstream: ProxyUpstream,
    /// The `listen` the scenario gave, if any.
    pub listen: Option<SocketAddr>,
    pub proxy: FaultProxy,
}

/// An injected fault of any kind.
#[derive(Debug)]
pub enum ActiveFault {
    Proxy(ProxyFault),
    DbPool(Box<DbPoolFault>),
    Tts(TtsStandInFault),
    Llm(LlmStandInFault),
    TempFileLeak(TempFileLeakFault),
    ProcessStall(ProcessStallFault),
    ProcessKill(ProcessKillFault),
}

impl ActiveFault {
    pub async fn confirm(&mut self) -> Confirmation {
        match self {
            ActiveFault::DbPool(fault) => fault.confirm().await,
            ActiveFault::Proxy(fault) => fault.confirm().await,
            ActiveFault::Tts(fault) => fault.confirm().await,
            ActiveFault::Llm(fault) => fault.confirm().await,
            ActiveFault::TempFileLeak(fault) => fault.confirm().await,
            ActiveFault::ProcessStall(fault) => fault.confirm().await,
            ActiveFault::ProcessKill(fault) => fault.confirm().await,
        }
    }

    /// Undoes it. `ending`: the run is stopping, so a killed fleet is not started again
    /// (the run stops it anyway).
    pub async fn clear(self, ending: bool) -> Result<String, FaultError> {
        match self {
            ActiveFault::DbPool(fault) => fault.clear().await,
            ActiveFault::Proxy(fault) => fault.clear().await,
            ActiveFault::Tts(fault) => fault.clear().await,
            ActiveFault::Llm(fault) => fault.clear().await,
            ActiveFault::TempFileLeak(fault) => fault.clear().await,
            ActiveFault::ProcessStall(fault) => fault.clear().await,
            ActiveFault::ProcessKill(fault) if ending => Ok(fault.leave_dead()),
            ActiveFault::ProcessKill(fault) => fault.clear().await,
        }
    }

    /// Where it acts, for the journal.
    pub fn target(&self) -> String {
        match self {
            ActiveFault::DbPool(fault) => fault.database().to_owned(),
            ActiveFault::Proxy(fault) => format!(
                "the proxy on {} in front of {}",
                fault.proxy().address(),
                fault.proxy().upstream()
            ),
            ActiveFault::Tts(_) => "the TTS stand-in".to_owned(),
            ActiveFault::Llm(_) => "the LLM stand-in".to_owned(),
            ActiveFault::TempFileLeak(fault) => fault.dir().display().to_string(),
            ActiveFault::ProcessStall(_) | ActiveFault::ProcessKill(_) => {
                "the fleet process".to_owned()
            }
        }
    }

    /// Journals what it did since the last time: the calls an LLM fault hit (the first
    /// [`MAX_JOURNALED_HITS`] of them), or a leak that stopped writing early
    /// (`leak_stopped`: free space at its floor, a name already taken, a failed write).
    /// Returns how many calls were hit.
    pub fn journal_progress(
        &mut self,
        journal: &Journal,
        identity: &serde_json::Value,
        before: u64,
    ) -> u64 {
        if let ActiveFault::TempFileLeak(fault) = self {
            if let Some(stop) = fault.take_stop() {
                journal_leak_stop(journal, identity, &stop);
            }
            return 0;
        }
        let ActiveFault::Llm(fault) = self else {
            return 0;
        };
        let hits = fault.take_hits();
        for (index, hit) in hits.iter().enumerate() {
            if before + index as u64 >= MAX_JOURNALED_HITS {
                break;
            }
            journal.record(
                "llm_fault_hit",
                merge(
                    identity,
                    json!({"call": hit.user, "hit": hit.fault, "status": hit.status}),
                ),
            );
        }
        hits.len() as u64
    }
}

/// `leak_stopped`, at the moment the leak stopped.
fn journal_leak_stop(journal: &Journal, identity: &serde_json::Value, stop: &LeakStop) {
    let mut fields = json!({
        "reason": stop.reason.key(),
        "why": stop.reason.to_string(),
        "files": stop.files,
        "bytes": stop.bytes,
    });
    if let super::temp_files::StopReason::FreeSpace { free, floor, .. } = &stop.reason {
        fields["free_bytes"] = json!(free);
        fields["floor_bytes"] = json!(floor);
    }
    let t_s = round_ms(
        stop.at
            .saturating_duration_since(journal.started())
            .as_secs_f64(),
    );
    journal.record_at("leak_stopped", t_s, merge(identity, fields));
}

/// `identity` (which fault, which occurrence) with `extra`'s fields: a journal record's body.
pub(super) fn merge(identity: &serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    let mut merged = identity.clone();
    if let (Some(merged), serde_json::Value::Object(extra)) = (merged.as_object_mut(), extra) {
        merged.extend(extra);
    }
    merged
}

/// Injects `fault` (its `occurrence`-th time) with what `environment` offers.
pub async fn inject(
    environment: &FaultEnvironment,
    fault: &ScheduledFault,
    occurrence: &Occurrence,
) -> Result<ActiveFault, FaultError> {
    let kind = fault.kind.name();
    let missing = |what: &str| FaultError::new(kind, format!("no {what} to act on"));
    let targets = &environment.targets;
    let fleet = || {
        targets
            .fleet
            .clone()
            .ok_or_else(|| missing("fleet process"))
    };
    let standins = |what: &str| {
        environment
            .standins
            .as_ref()
            .ok_or_else(|| missing(&format!("{what} stand-in")))
    };
    Ok(match &fault.fault {
        FaultSpec::Tts {
            fault: tts,
            fraction,
        } => ActiveFault::Tts(TtsStandInFault::inject_spec(
            standins("TTS")?,
            kind,
            &fault.name,
            tts,
            *fraction,
        )?),
        FaultSpec::Llm {
            fault: llm,
            fraction,
            latency,
        } => ActiveFault::Llm(LlmStandInFault::inject_spec(
            standins("LLM")?,
            kind,
            &fault.name,
            llm,
            *fraction,
            *latency,
        )?),
        FaultSpec::TempFileLeak(leak) => ActiveFault::TempFileLeak(
            TempFileLeakFault::inject_spec(
                leak,
                targets.audio_tmp_dir.as_deref(),
                &environment.tag,
                occurrence,
                environment.files.clone(),
            )
            .await?,
        ),
        FaultSpec::ProcessStall => {
            ActiveFault::ProcessStall(ProcessStallFault::inject(fleet()?).await?)
        }
        FaultSpec::ProcessKill => {
            ActiveFault::ProcessKill(ProcessKillFault::inject(fleet()?).await?)
        }
        FaultSpec::DbPoolExhaustion(db) => ActiveFault::DbPool(Box::new(
            DbPoolFault::inject_spec(
                db,
                targets.database_url.as_deref(),
                &environment.allow_hosts,
            )
            .await?,
        )),
        FaultSpec::Proxy(spec) => {
            ActiveFault::Proxy(inject_proxy(environment, spec, occurrence, kind)?)
        }
    })
}

/// Adds a proxy fault's toxics to the proxy the scenario started for its `upstream` and
/// `listen`.
fn inject_proxy(
    environment: &FaultEnvironment,
    spec: &ProxySpec,
    occurrence: &Occurrence,
    kind: &'static str,
) -> Result<ProxyFault, FaultError> {
    let entry = environment
        .proxies
        .iter()
        .find(|entry| entry.upstream == spec.upstream && entry.listen == spec.listen)
        .ok_or_else(|| FaultError::new(kind, "no proxy to act on"))?;
    ProxyFault::inject_spec(entry.proxy.clone(), &spec.toxics, occurrence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::faults::{DbPoolExhaustion, DbPoolMethod, FaultKind};
    use std::time::Duration;

    /// What faults act on in these tests: nothing but `standins`, and `allow_hosts`.
    fn environment(standins: Option<StandIns>, allow_hosts: Vec<String>) -> FaultEnvironment {
        FaultEnvironment {
            standins,
            proxies: Vec::new(),
            files: HarnessFiles::default(),
            targets: ChaosTargets::default(),
            tag: "test".into(),
            allow_hosts,
        }
    }

    /// A fault `name` of `kind`, on from the start for a second, with no detection.
    fn scheduled(name: &str, kind: FaultKind, fault: FaultSpec) -> ScheduledFault {
        ScheduledFault {
            name: name.into(),
            kind,
            fault,
            at: Duration::ZERO,
            duration: Duration::from_secs(1),
            every: None,
            detect: Vec::new(),
            recover_from: crate::scenario::faults::RecoverFrom::Clear,
            file: None,
            line: 1,
            column: 1,
        }
    }

    /// The first occurrence of a fault on from the start for a second.
    fn first_second() -> Occurrence {
        Occurrence {
            fault: 0,
            number: 1,
            at: Duration::ZERO,
            until: Duration::from_secs(1),
            hold_until: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_database_outside_allow_hosts_is_refused_before_any_connection() {
        let variable = "VOXSOAK_TEST_FAULT_FOREIGN_DB";
        // SAFETY: set once; no other test reads this name.
        unsafe {
            std::env::set_var(
                variable,
                "postgres://fleet:secret@db.example.com:5432/fleet",
            );
        }
        let environment = environment(None, vec!["127.0.0.1".into(), "localhost".into()]);
        let fault = scheduled(
            "db",
            FaultKind::DbPoolExhaustion,
            FaultSpec::DbPoolExhaustion(DbPoolExhaustion {
                method: DbPoolMethod::hold_locks(),
                database_url_env: Some(variable.into()),
            }),
        );
        let error = inject(&environment, &fault, &first_second())
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("db.example.com is not in allow_hosts"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
    }

    #[tokio::test]
    async fn a_stand_in_serves_one_fault_at_a_time() {
        use crate::standin::tts::TtsFault;
        let stop = tokio_util::sync::CancellationToken::new();
        let standins = StandIns::start(None, None, 1, stop.clone()).await.unwrap();
        let environment = environment(Some(standins.clone()), Vec::new());
        let tts = |name: &str, fault| {
            let fraction = 1.0;
            scheduled(name, FaultKind::Tts429, FaultSpec::Tts { fault, fraction })
        };
        let occurrence = first_second();
        let first = tts("first", TtsFault::RateLimited { retry_after: None });
        let second = tts("second", TtsFault::ServerError { code: 503 });
        let active = inject(&environment, &first, &occurrence).await.unwrap();
        let error = inject(&environment, &second, &occurrence)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("second would overlap first"),
            "{error}"
        );
        assert_eq!(
            standins.tts.behaviour().fault,
            TtsFault::RateLimited { retry_after: None },
            "the first fault is untouched"
        );
        active.clear(false).await.unwrap();
        let active = inject(&environment, &second, &occurrence).await.unwrap();
        drop(active);
        assert_eq!(standins.tts.behaviour().fault, TtsFault::None);
        stop.cancel();
    }
}
