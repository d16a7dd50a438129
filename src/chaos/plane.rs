//! The chaos plane of one run: starts the stand-ins (and the proxies in front of them)
//! before the fleet, then injects each planned fault on time, confirms it, clears it, and
//! journals every step. However the run ends, every fault is cleared: the scheduler clears
//! on its stop token, and each fault undoes itself when dropped (a panic).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::FaultError;
use super::fault::{ActiveFault, ChaosTargets, FaultEnvironment, ProxyEntry, inject, merge};
use super::proxy::FaultProxy;
use super::standin::{StandIns, base_url};
use super::temp_files::HarnessFiles;
use super::tts_log::journal_tts_requests;
use crate::detect::Injection;
use crate::journal::{Journal, round_ms};
use crate::observe::{Observation, Signal};
use crate::scenario::faults::{FaultSpec, Occurrence, ProxyUpstream, ScheduledFault, timeline};
use crate::scenario::{Scenario, Target};
use crate::target::FleetWiring;

/// How often an unconfirmed fault looks again.
const CONFIRM_POLL: Duration = Duration::from_millis(250);

/// Whether the stand-in TTS and LLM servers run (also: whenever a proxy stands in front
/// of one): for the embedded fleet always, for another fleet when the scenario gives them
/// an address or has a fault of theirs.
fn needs_standins(scenario: &Scenario) -> bool {
    matches!(scenario.target, Target::Embedded(_))
        || scenario.chaos.tts_listen.is_some()
        || scenario.chaos.llm_listen.is_some()
        || scenario
            .faults
            .iter()
            .any(|fault| matches!(fault.fault, FaultSpec::Tts { .. } | FaultSpec::Llm { .. }))
}

/// The chaos plane before the fleet starts: its stand-ins are up.
#[derive(Debug)]
pub struct ChaosPlane {
    faults: Vec<ScheduledFault>,
    confirm_within: Duration,
    standins: Option<StandIns>,
    proxies: Vec<ProxyEntry>,
    allow_hosts: Vec<String>,
    /// Set by [`ChaosPlane::start`], which hands the servers on to the run.
    started: bool,
    files: HarnessFiles,
    /// Stops the stand-ins once everything else has stopped.
    servers: CancellationToken,
    tag: String,
    /// Occurrences planned before this are not injected: the run is resumed there.
    resume_at: Duration,
}

impl Drop for ChaosPlane {
    /// A plane dropped before it started (the run failed to start the fleet): its stand-ins
    /// and proxies stop.
    fn drop(&mut self) {
        if !self.started {
            self.servers.cancel();
        }
    }
}

impl ChaosPlane {
    /// Starts what the fleet must be pointed at before it starts: the stand-ins, for the
    /// embedded fleet always (the harness sees every TTS request), and for other fleets when
    /// the scenario gives them an address (`[chaos] tts_listen` / `llm_listen`: a fleet is
    /// wired to them, faults or not) or a fault needs them.
    pub async fn prepare(scenario: &Scenario, tag: &str) -> Result<ChaosPlane, FaultError> {
        let servers = CancellationToken::new();
        let proxied = |upstream: ProxyUpstream| {
            scenario.faults.iter().any(|fault| {
                matches!(&fault.fault, FaultSpec::Proxy(proxy) if proxy.upstream == upstream)
            })
        };
        let (tts_proxied, llm_proxied) = (proxied(ProxyUpstream::Tts), proxied(ProxyUpstream::Llm));
        // A proxied stand-in listens anywhere; its proxy takes the address the fleet uses.
        let standins = if needs_standins(scenario) || tts_proxied || llm_proxied {
            Some(
                StandIns::start(
                    scenario.chaos.tts_listen.filter(|_| !tts_proxied),
                    scenario.chaos.llm_listen.filter(|_| !llm_proxied),
                    scenario.seed,
                    servers.clone(),
                )
                .await?,
            )
        } else {
            None
        };
        let mut proxies = Vec::new();
        for fault in &scenario.faults {
            let FaultSpec::Proxy(proxy) = &fault.fault else {
                continue;
            };
            if proxies.iter().any(|known: &ProxyEntry| {
                known.upstream == proxy.upstream && known.listen == proxy.listen
            }) {
                continue;
            }
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let (upstream, listen) = match (&proxy.upstream, &standins) {
                (ProxyUpstream::Tts, Some(standins)) => (
                    standins.tts_server.address,
                    proxy.listen.or(scenario.chaos.tts_listen).unwrap_or(any),
                ),
                (ProxyUpstream::Llm, Some(standins)) => (
                    standins.llm_server.address,
                    proxy.listen.or(scenario.chaos.llm_listen).unwrap_or(any),
                ),
                (ProxyUpstream::Address(address), _) => {
                    let resolved = tokio::net::lookup_host(address.as_str())
                        .await
                        .ok()
                        .and_then(|mut addresses| addresses.next())
                        .ok_or_else(|| {
                            FaultError::new("proxy", format!("cannot resolve upstream {address}"))
                        })?;
                    (resolved, proxy.listen.unwrap_or(any))
                }
                _ => unreachable!("stand-ins run whenever a proxy stands in front of one"),
            };
            let running = FaultProxy::spawn(listen, upstream, servers.clone())
                .await
                .map_err(|error| {
                    FaultError::new("proxy", format!("cannot listen on {listen}: {error}"))
                })?;
            proxies.push(ProxyEntry {
                upstream: proxy.upstream.clone(),
                listen: proxy.listen,
                proxy: running,
            });
        }
        Ok(ChaosPlane {
            faults: scenario.faults.clone(),
            confirm_within: scenario.chaos.confirm_within,
            standins,
            proxies,
            allow_hosts: scenario.allow_hosts.clone(),
            started: false,
            files: HarnessFiles::default(),
            servers,
            tag: tag.to_owned(),
            resume_at: Duration::ZERO,
        })
    }

    /// Leaves out the occurrences planned before `at`: a resumed run's schedule goes on
    /// from there (what the killed harness had injected was undone by the cleanup).
    pub fn resume_at(mut self, at: Duration) -> Self {
        self.resume_at = at;
        self
    }

    /// The address the fleet must use for a stand-in: its proxy's, if it has one.
    fn fleet_facing(&self, upstream: ProxyUpstream, direct: SocketAddr) -> SocketAddr {
        self.proxies
            .iter()
            .find(|entry| entry.upstream == upstream)
            .map_or(direct, |entry| entry.proxy.address())
    }

    /// Where the embedded fleet's LLM and TTS must point.
    pub fn wiring(&self) -> FleetWiring {
        FleetWiring {
            llm_base_url: self.standins.as_ref().map(|standins| {
                base_url(self.fleet_facing(ProxyUpstream::Llm, standins.llm_server.address))
            }),
            tts_base_url: self.standins.as_ref().map(|standins| {
                base_url(self.fleet_facing(ProxyUpstream::Tts, standins.tts_server.address))
            }),
            ..FleetWiring::default()
        }
    }

    /// Lines for the terminal: where the stand-ins listen (an external fleet must be
    /// pointed there).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(standins) = &self.standins {
            let wiring = self.wiring();
            lines.push(format!(
                "point the fleet's TTS_BASE_URL at {} (voxsoak's TTS stand-in{})",
                wiring.tts_base_url.unwrap_or_default(),
                if self.fleet_facing(ProxyUpstream::Tts, standins.tts_server.address)
                    == standins.tts_server.address
                {
                    ""
                } else {
                    ", behind a fault proxy"
                }
            ));
            lines.push(format!(
                "point the fleet's LLM_BASE_URL at {} (voxsoak's LLM stand-in)",
                wiring.llm_base_url.unwrap_or_default()
            ));
        }
        for entry in &self.proxies {
            if let ProxyUpstream::Address(address) = &entry.upstream {
                lines.push(format!(
                    "fault proxy for {address} listens on {}",
                    entry.proxy.address()
                ));
            }
        }
        lines
    }

    pub fn standins(&self) -> Option<&StandIns> {
        self.standins.as_ref()
    }

    /// Runs the timeline from `start` in a task of its own until it is done or `stop` is
    /// cancelled; every injected fault is cleared before the task ends. Each injection is
    /// announced to the observers' hub on `observers`, which watches for its detection.
    pub fn start(
        mut self,
        targets: ChaosTargets,
        journal: Journal,
        observers: Option<UnboundedSender<Observation>>,
        run_for: Duration,
        seed: u64,
        stop: CancellationToken,
    ) -> ChaosRun {
        self.started = true;
        if let Some(root) = &targets.temp_root {
            // Leaked files are written down in the run's temp root as they are created, so
            // that `voxsoak clean` finds them after a `kill -9` of the harness.
            self.files.keep_ledger_in(root.clone());
        }
        let mut occurrences = timeline(&self.faults, run_for, seed);
        occurrences.retain(|occurrence| occurrence.at >= self.resume_at);
        let log_stop = CancellationToken::new();
        let tts_log = self.standins.as_ref().map(|standins| {
            tokio::spawn(journal_tts_requests(
                Arc::clone(&standins.tts),
                journal.clone(),
                log_stop.clone(),
            ))
        });
        let shared = Arc::new(Shared {
            faults: std::mem::take(&mut self.faults),
            confirm_within: self.confirm_within,
            environment: FaultEnvironment {
                standins: self.standins.take(),
                proxies: std::mem::take(&mut self.proxies),
                allow_hosts: std::mem::take(&mut self.allow_hosts),
                files: self.files.clone(),
                targets,
                tag: std::mem::take(&mut self.tag),
            },
            journal,
            observers,
        });
        let journal = shared.journal.clone();
        let task = tokio::spawn(run_timeline(Arc::clone(&shared), occurrences, stop));
        ChaosRun {
            task,
            journal,
            tts_log,
            log_stop,
            files: self.files.clone(),
            servers: self.servers.clone(),
        }
    }
}

/// The chaos plane while the run goes on.
#[derive(Debug)]
pub struct ChaosRun {
    task: tokio::task::JoinHandle<()>,
    /// Where a failure of the scheduler itself is journaled.
    journal: Journal,
    /// Journals the TTS stand-in's requests (`tts_requests`).
    tts_log: Option<tokio::task::JoinHandle<()>>,
    log_stop: CancellationToken,
    files: HarnessFiles,
    servers: CancellationToken,
}

impl ChaosRun {
    /// Waits for the scheduler (cancel its stop token first to end it early): every fault
    /// has been cleared when this returns.
    pub async fn finish(self) -> ChaosOutcome {
        // Its faults may not have been injected, confirmed or journaled as planned: the
        // verdict is `error`, not a fleet that missed them.
        self.journal.task_ended("chaos scheduler", self.task.await);
        self.log_stop.cancel();
        // Its last window goes into the journal before the run ends; without it the
        // retry-storm SLO would grade requests it never saw.
        if let Some(tts_log) = self.tts_log {
            self.journal.task_ended("TTS request log", tts_log.await);
        }
        ChaosOutcome {
            files: self.files,
            servers: self.servers,
        }
    }
}

/// What is left to tear down once the fleet has stopped. (What happened to each fault is
/// in the journal, where the grader reads it.)
#[derive(Debug)]
pub struct ChaosOutcome {
    files: HarnessFiles,
    servers: CancellationToken,
}

impl ChaosOutcome {
    /// Removes every file the harness leaked and stops the stand-ins. Returns how many
    /// files were removed.
    pub fn tear_down(&self) -> u64 {
        let removed = self.files.remove_all();
        self.servers.cancel();
        removed
    }
}

impl Drop for ChaosOutcome {
    fn drop(&mut self) {
        self.tear_down();
    }
}

#[derive(Debug)]
struct Shared {
    faults: Vec<ScheduledFault>,
    confirm_within: Duration,
    environment: FaultEnvironment,
    journal: Journal,
    /// The observers' hub, told of each injection.
    observers: Option<UnboundedSender<Observation>>,
}

async fn run_timeline(shared: Arc<Shared>, occurrences: Vec<Occurrence>, stop: CancellationToken) {
    let start = shared.journal.started();
    let mut tasks = JoinSet::new();
    // The fault each running task injects, to name it should the task panic.
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    for occurrence in occurrences {
        while let Some(joined) = tasks.try_join_next_with_id() {
            finished(&shared, &mut running, joined);
        }
        // Start each one when its time comes, so a 72-hour timeline holds tasks only for
        // the faults that are on.
        tokio::select! {
            () = tokio::time::sleep_until(start + occurrence.at) => {}
            () = stop.cancelled() => continue,
        }
        if stop.is_cancelled() {
            continue;
        }
        let name = shared.faults[occurrence.fault].name.clone();
        let task_shared = Arc::clone(&shared);
        let stop = stop.clone();
        let handle =
            tasks.spawn(async move { run_occurrence(task_shared, occurrence, stop).await });
        running.insert(handle.id(), name);
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        finished(&shared, &mut running, joined);
    }
}

/// Forgets a finished occurrence; one whose task panicked is journaled as a `chaos_error`
/// (its fault undid itself as the task unwound).
fn finished(
    shared: &Shared,
    running: &mut HashMap<tokio::task::Id, String>,
    joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    match joined {
        Ok((id, ())) => {
            running.remove(&id);
        }
        Err(error) => {
            let name = running
                .remove(&error.id())
                .unwrap_or_else(|| "unknown".into());
            shared.journal.record(
                "chaos_error",
                json!({"fault": name, "error": format!("the fault's task failed: {error}")}),
            );
        }
    }
}

/// One occurrence of a fault, from injection to clear: inject it (and tell the observers),
/// wait until it is seen in effect, keep it on until its time is up or the run stops, then
/// clear it. Every step is journaled.
async fn run_occurrence(shared: Arc<Shared>, occurrence: Occurrence, stop: CancellationToken) {
    let fault = &shared.faults[occurrence.fault];
    let steps = OccurrenceSteps {
        journal: &shared.journal,
        identity: json!({
            "fault": fault.name, "kind": fault.kind.name(), "occurrence": occurrence.number
        }),
        until: shared.journal.started() + occurrence.until,
        stop: &stop,
    };
    let Some(mut injected) = steps.inject(&shared, &occurrence).await else {
        return;
    };
    // Not seen in effect by its end (nothing reached it yet): it stays on until it is,
    // at most `confirm_within` after the injection and never past the next injection.
    let hold_until = steps
        .until
        .max(shared.journal.started() + occurrence.hold_until);
    let confirm_by = (Instant::now() + shared.confirm_within).min(hold_until);
    let mut hits = 0u64;
    let confirmed = steps.confirm(&mut injected, &mut hits, confirm_by).await;
    let held = Instant::now() > steps.until;
    steps.keep_on(&mut injected, &mut hits).await;
    let early = stop.is_cancelled() && Instant::now() < steps.until;
    let held_s = held.then(|| {
        round_ms(
            Instant::now()
                .saturating_duration_since(steps.until)
                .as_secs_f64(),
        )
    });
    if !confirmed {
        // A fault may take effect after `confirm_within` (no traffic yet, a small fraction):
        // look once more before undoing it.
        steps.confirm_late(&mut injected).await;
    }
    steps.clear(injected, early, held_s).await;
}

/// What every step of one occurrence needs: where to journal, under which fault's name,
/// when its time is up and the run's stop.
struct OccurrenceSteps<'a> {
    journal: &'a Journal,
    /// Which fault, which occurrence: the body every record of it starts from.
    identity: serde_json::Value,
    /// When its planned window ends.
    until: Instant,
    stop: &'a CancellationToken,
}

impl OccurrenceSteps<'_> {
    /// Injects the fault: `fault_injected` (at the moment it started to take effect) and
    /// the observers told, or `fault_failed` and None.
    async fn inject(&self, shared: &Shared, occurrence: &Occurrence) -> Option<ActiveFault> {
        let fault = &shared.faults[occurrence.fault];
        let planned_at_s = round_ms(occurrence.at.as_secs_f64());
        // The fault takes effect somewhere within `inject`; a fleet signal seen while it
        // runs (a probe refused by the process just killed) is a detection, not an earlier
        // event.
        let injected_at = self.journal.elapsed_s();
        let injected = match inject(&shared.environment, fault, occurrence).await {
            Ok(injected) => injected,
            Err(error) => {
                self.record(
                    "fault_failed",
                    json!({"error": error.to_string(), "planned_at_s": planned_at_s}),
                );
                return None;
            }
        };
        self.journal.record_at(
            "fault_injected",
            injected_at,
            merge(
                &self.identity,
                json!({
                    "planned_at_s": planned_at_s,
                    "until_s": round_ms(occurrence.until.as_secs_f64()),
                    "target": injected.target(),
                }),
            ),
        );
        if let Some(observers) = &shared.observers {
            let _ = observers.send(Observation::now(Signal::FaultInjected(Injection {
                fault: fault.name.clone(),
                kind: fault.kind.name().to_owned(),
                occurrence: occurrence.number,
                injected_at_s: injected_at,
            })));
        }
        Some(injected)
    }

    /// Looks until the fault is seen in effect, `confirm_by` passes or the run stops, and
    /// journals `fault_confirmed` or `fault_not_in_effect`. True when it was confirmed.
    async fn confirm(
        &self,
        injected: &mut ActiveFault,
        hits: &mut u64,
        confirm_by: Instant,
    ) -> bool {
        let confirmation = loop {
            *hits += injected.journal_progress(self.journal, &self.identity, *hits);
            let confirmation = injected.confirm().await;
            if confirmation.in_effect || Instant::now() >= confirm_by || self.stop.is_cancelled() {
                break confirmation;
            }
            tokio::select! {
                () = tokio::time::sleep(CONFIRM_POLL) => {}
                () = self.stop.cancelled() => {}
            }
        };
        self.record(
            if confirmation.in_effect {
                "fault_confirmed"
            } else {
                "fault_not_in_effect"
            },
            json!({"evidence": confirmation.evidence}),
        );
        confirmation.in_effect
    }

    /// On until its time is up or the run stops; LLM hits are journaled as they come.
    async fn keep_on(&self, injected: &mut ActiveFault, hits: &mut u64) {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(self.until) => break,
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    *hits += injected.journal_progress(self.journal, &self.identity, *hits);
                }
            }
        }
        injected.journal_progress(self.journal, &self.identity, *hits);
    }

    /// One more look at a fault not confirmed in time: `fault_confirmed` (late) if it is in
    /// effect now.
    async fn confirm_late(&self, injected: &mut ActiveFault) {
        let late = injected.confirm().await;
        if late.in_effect {
            self.record(
                "fault_confirmed",
                json!({"evidence": late.evidence, "late": true}),
            );
        }
    }

    /// Undoes the fault: `fault_cleared` (`early` when the run stopped it, `held_s` when it
    /// stayed on past its planned end because it had not met traffic yet) or
    /// `fault_clear_failed`.
    async fn clear(&self, injected: ActiveFault, early: bool, held_s: Option<f64>) {
        match injected.clear(self.stop.is_cancelled()).await {
            Ok(note) => {
                let mut fields = json!({"note": note, "early": early});
                if let Some(held_s) = held_s {
                    fields["held_s"] = json!(held_s);
                }
                self.record("fault_cleared", fields);
            }
            Err(error) => {
                self.record("fault_clear_failed", json!({"error": error.to_string()}));
            }
        }
    }

    /// Journals `event` now, with the occurrence's identity and `fields`.
    fn record(&self, event: &str, fields: serde_json::Value) {
        self.journal.record(event, merge(&self.identity, fields));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scheduler or TTS log task that panics is journaled as a harness error (the verdict
    /// is then `error`, see grade's `a_harness_task_that_failed_makes_the_run_an_error`),
    /// not swallowed so that its faults look undetected by the fleet.
    #[tokio::test]
    async fn a_chaos_task_that_panics_is_a_harness_error_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = Journal::create(&path, tokio::time::Instant::now()).unwrap();
        let run = ChaosRun {
            task: tokio::spawn(async { panic!("scheduler bug") }),
            journal: journal.clone(),
            tts_log: Some(tokio::spawn(async { panic!("log bug") })),
            log_stop: CancellationToken::new(),
            files: HarnessFiles::default(),
            servers: CancellationToken::new(),
        };
        run.finish().await;
        journal.sync();
        let errors: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|record| record["event"] == "harness_error")
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0]["task"], "chaos scheduler");
        assert_eq!(errors[0]["error"], "it panicked: scheduler bug");
        assert_eq!(errors[1]["task"], "TTS request log");
        assert_eq!(errors[1]["error"], "it panicked: log bug");
    }
}
