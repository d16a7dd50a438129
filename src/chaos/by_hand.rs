//! `voxsoak chaos KIND --for 5m`: one fault injected by hand against a fleet that is already
//! running, with a live view, and undone on exit however the command ends.
//!
//! The fault's parameters (`--set key=value`) are validated exactly as a scenario's
//! `[[faults]]` entry: they are written into a small synthetic scenario (built with the
//! `toml` crate, so every value is escaped) against an external placeholder target, and the
//! scenario validator checks it. Its diagnostics are given back naming the flag, never the
//! synthetic file's line and column. Process kinds are the exception: a scenario refuses
//! to signal an external fleet, but by hand the operator names the pid, so their fault is
//! built directly.
//!
//! What a fault acts on comes from flags: `--pid` (process kinds), `--database-url-env`
//! (`db_pool_exhaustion`), `--dir` (`temp_file_leak`), `--listen` (the stand-in kinds, whose
//! stand-in serves there for the duration), and `--set upstream=… --set listen=…` (`proxy`,
//! which runs for the duration). The fleet must already be pointed at a stand-in or proxy.

use crate::console::{errln, outln};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fault::{ActiveFault, FaultEnvironment, ProxyEntry, inject};
use super::process::ProcessTarget;
use super::proxy::FaultProxy;
use super::standin::{StandIns, base_url};
use super::temp_files::HarnessFiles;
use super::{ChaosTargets, Confirmation, FaultError};
use crate::exit;
use crate::scenario::faults::{
    ActsOn, FaultKind, FaultSpec, Occurrence, ProxyFault, ProxyUpstream, ScheduledFault,
};
use crate::scenario::{self, ScenarioError};

/// How often the fault is confirmed again while it is on.
const CONFIRM_EVERY: Duration = Duration::from_secs(1);
/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(5);
/// Allowed hosts when `--allow-host` adds none: loopback, as in a scenario.
const LOOPBACK: [&str; 3] = ["127.0.0.1", "localhost", "::1"];
/// The synthetic scenario's target: never connected to, only there to make it external.
const PLACEHOLDER_STREAM_URL: &str = "ws://127.0.0.1:9/";
/// The synthetic scenario's health and metrics URLs: by hand nothing is observed, but a
/// fault's default `detect` rule must still validate against an external target.
const PLACEHOLDER_HEALTH_URL: &str = "http://127.0.0.1:9/health";
const PLACEHOLDER_METRICS_URL: &str = "http://127.0.0.1:9/metrics";

/// The fault kinds and what each needs by hand, for `voxsoak chaos --help`: each family's
/// block ([`KindSpec::chaos_help`](crate::scenario::faults::KindSpec::chaos_help)) in
/// registry order.
pub static KINDS_HELP: LazyLock<String> = LazyLock::new(|| {
    let mut help = String::from("Fault kinds (KIND) and what each needs:\n");
    let mut blocks: Vec<&str> = Vec::new();
    for kind in FaultKind::ALL {
        let block = kind.spec().chaos_help;
        if !blocks.contains(&block) {
            blocks.push(block);
            help.push_str(block);
        }
    }
    help.push_str(
        "
Exit status: 0 the fault was seen in effect and was undone; 1 it never took effect;
2 bad arguments, or injecting or undoing it failed.",
    );
    help
});

/// What `voxsoak chaos` was asked to do, as given on the command line.
#[derive(Debug, Clone)]
pub struct ByHandRequest {
    /// A [`FaultKind`] name.
    pub kind: String,
    /// How long the fault stays on.
    pub duration: Duration,
    /// `--set key=value`, as given.
    pub settings: Vec<String>,
    pub pid: Option<u32>,
    pub database_url_env: Option<String>,
    /// `temp_file_leak`: the fleet's temp dir, declared writable by naming it.
    pub dir: Option<PathBuf>,
    /// `temp_file_leak`: `max_total` may be above the 10 GiB ceiling.
    pub allow_large_leaks: bool,
    /// Where a stand-in listens (the stand-in kinds).
    pub listen: Option<String>,
    /// Hosts allowed besides loopback (a proxy's upstream).
    pub allow_hosts: Vec<String>,
    /// Seeds the stand-ins' and the proxy's draws (`fraction`, `toxicity`).
    pub seed: u64,
}

/// `voxsoak chaos` could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ByHandError {
    /// A flag or `--set` value is wrong or missing; `flag` names it (`--set holders`).
    #[error("{flag}: {message}")]
    Invalid { flag: String, message: String },
    /// A stand-in or the proxy could not be started.
    #[error("cannot start what the fault needs")]
    Start(#[source] FaultError),
    /// The fault could not be injected (nothing is left in place).
    #[error("injecting the fault failed")]
    Inject(#[source] FaultError),
}

impl ByHandError {
    fn invalid(flag: impl Into<String>, message: impl Into<String>) -> Self {
        ByHandError::Invalid {
            flag: flag.into(),
            message: message.into(),
        }
    }
}

/// A checked request: the fault and what it acts on, nothing started yet.
#[derive(Debug, Clone)]
pub struct ByHandFault {
    pub fault: ScheduledFault,
    /// The stand-in's address (stand-in kinds).
    pub standin_listen: Option<SocketAddr>,
    pub pid: Option<u32>,
    pub seed: u64,
    /// Loopback and `--allow-host`: a database fault checks its server against them.
    pub allow_hosts: Vec<String>,
}

/// How it went.
#[derive(Debug)]
pub struct ByHandOutcome {
    /// Where the fault acted.
    pub target: String,
    /// Whether it was seen in effect at least once.
    pub confirmed: bool,
    /// The last confirmation.
    pub last: Confirmation,
    /// What `clear` said, or why it failed.
    pub cleared: Result<String, FaultError>,
    /// Files the harness wrote that were removed at the end.
    pub files_removed: u64,
    /// The command was stopped (Ctrl-C, SIGTERM) before the duration passed.
    pub interrupted: bool,
    pub elapsed: Duration,
}

impl ByHandOutcome {
    /// 0: in effect and undone; 1: never in effect ("not in effect" is never success); 2:
    /// undoing it failed.
    pub fn exit_code(&self) -> i32 {
        if self.cleared.is_err() {
            exit::HARNESS_ERROR
        } else if !self.confirmed {
            exit::FAILED
        } else {
            exit::PASS
        }
    }
}

fn uses_tts(kind: FaultKind) -> bool {
    kind.acts_on() == ActsOn::TtsStandIn
}

fn is_process(kind: FaultKind) -> bool {
    kind.acts_on() == ActsOn::FleetProcess
}

/// The parameters that come from flags of their own, not `--set`.
fn own_flag(key: &str) -> Option<&'static str> {
    match key {
        "dir" => Some("--dir DIR"),
        "database_url_env" => Some("--database-url-env NAME"),
        _ => None,
    }
}

/// `--set key=value`: the value as TOML when it is a number or a bool, else a string.
fn parse_setting(text: &str) -> Result<(String, toml::Value), ByHandError> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(ByHandError::invalid(
            "--set",
            format!("expected key=value, found {text:?}"),
        ));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(ByHandError::invalid(
            "--set",
            format!("expected key=value, found {text:?}"),
        ));
    }
    let value = match value.trim().parse::<toml::Value>() {
        Ok(
            parsed @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
        ) => parsed,
        _ => toml::Value::String(value.to_owned()),
    };
    Ok((key.to_owned(), value))
}

/// Checks the request: the kind, the flags it needs (and none it does not take), and its
/// parameters, validated as a scenario's `[[faults]]` entry.
pub fn check(request: &ByHandRequest) -> Result<ByHandFault, ByHandError> {
    let kind = FaultKind::from_name(request.kind.trim()).ok_or_else(|| {
        let names: Vec<&str> = FaultKind::ALL.into_iter().map(FaultKind::name).collect();
        ByHandError::invalid(
            "KIND",
            format!(
                "unknown fault kind {:?}; expected one of {}",
                request.kind,
                names.join(", ")
            ),
        )
    })?;
    if request.duration.is_zero() {
        return Err(ByHandError::invalid("--for", "must be longer than zero"));
    }
    check_flags(kind, request)?;
    let parameters = parameters(kind, request)?;
    if kind.acts_on() == ActsOn::Proxy {
        check_proxy_parameters(&parameters)?;
    }
    let fault = if is_process(kind) {
        process_fault(kind, request.duration)
    } else {
        validate_as_scenario(kind, request, parameters)?
    };
    let standin_listen = match (&fault.fault, &request.listen) {
        (FaultSpec::Tts { .. } | FaultSpec::Llm { .. }, Some(listen)) => listen.trim().parse().ok(),
        _ => None,
    };
    Ok(ByHandFault {
        fault,
        standin_listen,
        pid: request.pid,
        seed: request.seed,
        allow_hosts: LOOPBACK
            .iter()
            .map(|host| (*host).to_owned())
            .chain(request.allow_hosts.iter().cloned())
            .collect(),
    })
}

/// The `--set KEY=VALUE` parameters as a `[[faults]]` table: each one the kind takes, given
/// once, and not one that has a flag of its own.
fn parameters(kind: FaultKind, request: &ByHandRequest) -> Result<toml::Table, ByHandError> {
    let mut parameters = toml::Table::new();
    for text in &request.settings {
        let (key, value) = parse_setting(text)?;
        let flag = format!("--set {key}");
        if let Some(own) = own_flag(&key)
            && kind.parameters().contains(&key.as_str())
        {
            return Err(ByHandError::invalid(flag, format!("give it as {own}")));
        }
        if !kind.parameters().contains(&key.as_str()) {
            let takes = match kind.parameters() {
                [] => "no parameters".to_owned(),
                takes => takes
                    .iter()
                    .filter(|key| own_flag(key).is_none())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            return Err(ByHandError::invalid(
                flag,
                format!("{kind} does not take {key}; it takes {takes}"),
            ));
        }
        if parameters.insert(key.clone(), value).is_some() {
            return Err(ByHandError::invalid(flag, "given twice"));
        }
    }
    Ok(parameters)
}

/// By hand a proxy needs `upstream` and `listen`, and stands in front of an address, never
/// a stand-in.
fn check_proxy_parameters(parameters: &toml::Table) -> Result<(), ByHandError> {
    for key in ["upstream", "listen"] {
        if !parameters.contains_key(key) {
            return Err(ByHandError::invalid(
                format!("--set {key}"),
                "proxy needs --set upstream=HOST:PORT --set listen=127.0.0.1:PORT (the fleet must already be pointed at listen)",
            ));
        }
    }
    if let Some(toml::Value::String(upstream)) = parameters.get("upstream")
        && matches!(upstream.trim(), "tts" | "llm")
    {
        return Err(ByHandError::invalid(
            "--set upstream",
            "by hand a proxy stands in front of HOST:PORT; for a stand-in, fault the stand-in itself (tts_*, llm_*)",
        ));
    }
    Ok(())
}

/// A process fault takes no parameters: the fault itself, at once, for `duration`.
fn process_fault(kind: FaultKind, duration: Duration) -> ScheduledFault {
    ScheduledFault {
        name: kind.name().to_owned(),
        kind,
        fault: if kind == FaultKind::ProcessStall {
            FaultSpec::ProcessStall
        } else {
            FaultSpec::ProcessKill
        },
        at: Duration::ZERO,
        duration,
        every: None,
        detect: vec![kind.default_detection()],
        recover_from: crate::scenario::faults::RecoverFrom::Clear,
        file: None,
        line: 0,
        column: 0,
    }
}

/// Each kind's own flag is required, and the others are refused, so nothing given is
/// silently ignored.
fn check_flags(kind: FaultKind, request: &ByHandRequest) -> Result<(), ByHandError> {
    let standin = kind.acts_on().is_standin();
    let flags: [(&str, bool, bool, &str); 4] = [
        (
            "--pid",
            request.pid.is_some(),
            is_process(kind),
            "--pid N (the process to signal)",
        ),
        (
            "--database-url-env",
            request.database_url_env.is_some(),
            kind.acts_on() == ActsOn::Database,
            "--database-url-env NAME (the variable holding the fleet's database URL)",
        ),
        (
            "--dir",
            request.dir.is_some(),
            kind.acts_on() == ActsOn::TempDir,
            "--dir DIR (the fleet's temp dir)",
        ),
        (
            "--listen",
            request.listen.is_some(),
            standin,
            "--listen 127.0.0.1:PORT (the stand-in serves there; point the fleet at it)",
        ),
    ];
    for (flag, given, needed, usage) in flags {
        if needed && !given {
            return Err(ByHandError::invalid(flag, format!("{kind} needs {usage}")));
        }
        if given && !needed {
            return Err(ByHandError::invalid(
                flag,
                format!("{kind} does not use {flag}"),
            ));
        }
    }
    if request.allow_large_leaks && kind.acts_on() != ActsOn::TempDir {
        return Err(ByHandError::invalid(
            "--allow-large-leaks",
            format!("{kind} does not use --allow-large-leaks"),
        ));
    }
    if let Some(pid) = request.pid
        && (pid == 0 || pid == std::process::id())
    {
        return Err(ByHandError::invalid(
            "--pid",
            format!("{pid} is not a process voxsoak can signal"),
        ));
    }
    if let Some(name) = &request.database_url_env
        && std::env::var_os(name).is_none()
    {
        return Err(ByHandError::invalid(
            "--database-url-env",
            format!("the variable {name} is not set"),
        ));
    }
    Ok(())
}

/// The synthetic scenario: an external placeholder target and one `[[faults]]` entry.
fn synthetic_scenario(
    kind: FaultKind,
    request: &ByHandRequest,
    parameters: toml::Table,
) -> toml::Table {
    use toml::Value;
    let strings = |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
    let mut hosts: Vec<String> = LOOPBACK.iter().map(|host| (*host).to_owned()).collect();
    hosts.extend(request.allow_hosts.iter().cloned());
    let mut target = toml::Table::new();
    target.insert(
        "stream_url".into(),
        Value::String(PLACEHOLDER_STREAM_URL.into()),
    );
    target.insert("allow_hosts".into(), strings(hosts));
    let mut hold = toml::Table::new();
    hold.insert("ramp_to".into(), Value::Integer(1));
    hold.insert("over".into(), Value::String("1s".into()));
    let mut load = toml::Table::new();
    load.insert("stages".into(), Value::Array(vec![Value::Table(hold)]));
    let mut fault = toml::Table::new();
    fault.insert("kind".into(), Value::String(kind.name().into()));
    fault.insert("at".into(), Value::String("0s".into()));
    fault.insert(
        "for".into(),
        Value::String(humantime::format_duration(request.duration).to_string()),
    );
    if let Some(dir) = &request.dir {
        fault.insert("dir".into(), Value::String(dir.display().to_string()));
    }
    if let Some(name) = &request.database_url_env {
        fault.insert("database_url_env".into(), Value::String(name.clone()));
    }
    fault.extend(parameters);
    let mut observe = toml::Table::new();
    observe.insert(
        "health_url".into(),
        Value::String(PLACEHOLDER_HEALTH_URL.into()),
    );
    observe.insert(
        "metrics_url".into(),
        Value::String(PLACEHOLDER_METRICS_URL.into()),
    );
    let mut document = toml::Table::new();
    document.insert("target".into(), Value::Table(target));
    document.insert("observe".into(), Value::Table(observe));
    document.insert("load".into(), Value::Table(load));
    let mut chaos = toml::Table::new();
    if let Some(listen) = &request.listen {
        let key = if uses_tts(kind) {
            "tts_listen"
        } else {
            "llm_listen"
        };
        chaos.insert(key.into(), Value::String(listen.clone()));
    }
    // By hand, naming the dir is what declares it writable; the checks on what a fault may
    // write into (no system directory, nowhere else once resolved) still apply.
    if let Some(dir) = &request.dir {
        chaos.insert(
            "writable_dirs".into(),
            strings(vec![dir.display().to_string()]),
        );
    }
    if request.allow_large_leaks {
        chaos.insert("allow_large_leaks".into(), Value::Boolean(true));
    }
    if !chaos.is_empty() {
        document.insert("chaos".into(), Value::Table(chaos));
    }
    document.insert("faults".into(), Value::Array(vec![Value::Table(fault)]));
    document
}

fn validate_as_scenario(
    kind: FaultKind,
    request: &ByHandRequest,
    parameters: toml::Table,
) -> Result<ScheduledFault, ByHandError> {
    let document = synthetic_scenario(kind, request, parameters);
    let source = toml::to_string(&document).map_err(|error| {
        ByHandError::invalid("--set", format!("cannot be written as TOML: {error}"))
    })?;
    let path = Path::new("voxsoak chaos");
    match scenario::parse(&source, path) {
        Ok(mut parsed) if parsed.faults.len() == 1 => Ok(parsed.faults.remove(0)),
        Ok(_) => Err(ByHandError::invalid(
            "KIND",
            "the fault did not validate as one [[faults]] entry",
        )),
        Err(ScenarioError::Invalid { diagnostics, .. }) => {
            let diagnostic = &diagnostics[0];
            Err(ByHandError::invalid(
                flag_for_line(&source, diagnostic.line),
                in_flags(&diagnostic.message),
            ))
        }
        Err(error) => Err(ByHandError::invalid("KIND", error.to_string())),
    }
}

/// A diagnostic of the synthetic scenario in the command line's terms, where it names a
/// key that is a flag by hand.
fn in_flags(message: &str) -> String {
    message
        .strip_prefix("writable_dirs: ")
        .unwrap_or(message)
        .replace(
            "set [chaos] allow_large_leaks = true",
            "add --allow-large-leaks",
        )
}

/// The flag behind line `line` (1-based) of the synthetic scenario: the key on that line,
/// or on the nearest line above it that has one (a value spread over lines).
fn flag_for_line(source: &str, line: usize) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut table = "";
    let mut key = None;
    for text in lines.iter().take(line.min(lines.len())) {
        let text = text.trim();
        if text.starts_with('[') && !text.contains('=') {
            table = text;
            key = None;
        } else if let Some((name, _)) = text.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                key = Some(name);
            }
        }
    }
    match (table, key) {
        (_, Some("tts_listen" | "llm_listen")) => "--listen".to_owned(),
        (_, Some("allow_hosts")) => "--allow-host".to_owned(),
        ("[chaos]", Some("writable_dirs")) => "--dir".to_owned(),
        ("[chaos]", Some("allow_large_leaks")) => "--allow-large-leaks".to_owned(),
        ("[[faults]]", Some("for")) => "--for".to_owned(),
        ("[[faults]]", Some("dir")) => "--dir".to_owned(),
        ("[[faults]]", Some("database_url_env")) => "--database-url-env".to_owned(),
        ("[[faults]]", Some("kind") | None) => "KIND".to_owned(),
        ("[[faults]]", Some(key)) => format!("--set {key}"),
        _ => "KIND".to_owned(),
    }
}

/// What was started for the fault, stopped and removed when dropped, however the command
/// ends.
#[derive(Debug)]
struct Started {
    servers: CancellationToken,
    files: HarnessFiles,
}

impl Started {
    fn tear_down(&self) -> u64 {
        let removed = self.files.remove_all();
        self.servers.cancel();
        removed
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// Starts the stand-in or proxy the fault needs; returns the environment and lines telling
/// the operator what to point the fleet at.
async fn environment(
    checked: &ByHandFault,
    started: &Started,
) -> Result<(FaultEnvironment, Vec<String>), ByHandError> {
    let mut notes = Vec::new();
    let mut standins = None;
    let mut proxies = Vec::new();
    let mut targets = ChaosTargets::default();
    match &checked.fault.fault {
        FaultSpec::Tts { .. } | FaultSpec::Llm { .. } => {
            let (running, note) = start_standin(checked, started).await?;
            notes.push(note);
            standins = Some(running);
        }
        FaultSpec::Proxy(spec) => {
            let (entry, note) = start_proxy(spec, started).await?;
            notes.push(note);
            proxies.push(entry);
        }
        FaultSpec::ProcessStall | FaultSpec::ProcessKill => {
            let pid = checked.pid.expect("checked: process kinds need --pid");
            targets.fleet = Some(ProcessTarget::Pid(pid));
            if matches!(checked.fault.fault, FaultSpec::ProcessKill) {
                notes.push(format!(
                    "pid {pid} gets SIGKILL and is not restarted: voxsoak did not start it, its supervisor must"
                ));
            } else {
                notes.push(format!(
                    "pid {pid} gets SIGSTOP now and SIGCONT when this ends"
                ));
            }
        }
        FaultSpec::TempFileLeak(leak) => {
            notes.push(format!(
                "{}; every file written is removed when this ends",
                scenario::describe_leak(leak)
            ));
        }
        FaultSpec::DbPoolExhaustion(_) => {}
    }
    Ok((
        FaultEnvironment {
            standins,
            proxies,
            files: started.files.clone(),
            targets,
            tag: format!("chaos-{}", std::process::id()),
            allow_hosts: checked.allow_hosts.clone(),
        },
        notes,
    ))
}

/// Starts the TTS or LLM stand-in the fault acts on (on `--listen` if given), and the line
/// telling the operator what the fleet must point at.
async fn start_standin(
    checked: &ByHandFault,
    started: &Started,
) -> Result<(StandIns, String), ByHandError> {
    let tts = matches!(checked.fault.fault, FaultSpec::Tts { .. });
    let (tts_listen, llm_listen) = if tts {
        (checked.standin_listen, None)
    } else {
        (None, checked.standin_listen)
    };
    let running = StandIns::start(
        tts_listen,
        llm_listen,
        checked.seed,
        started.servers.clone(),
    )
    .await
    .map_err(ByHandError::Start)?;
    let (what, variable, address) = if tts {
        ("TTS", "TTS_BASE_URL", running.tts_server.address)
    } else {
        ("LLM", "LLM_BASE_URL", running.llm_server.address)
    };
    let note = format!(
        "voxsoak's {what} stand-in serves on {address} for the duration; the fleet's {variable} must already point at {}",
        base_url(address)
    );
    Ok((running, note))
}

/// Starts the fault proxy in front of the upstream address, and the line telling the
/// operator what the fleet must point at.
async fn start_proxy(
    spec: &ProxyFault,
    started: &Started,
) -> Result<(ProxyEntry, String), ByHandError> {
    let ProxyUpstream::Address(address) = &spec.upstream else {
        unreachable!("checked: by hand a proxy stands in front of HOST:PORT");
    };
    let upstream = tokio::net::lookup_host(address.as_str())
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| {
            ByHandError::Start(FaultError::new(
                "proxy",
                format!("cannot resolve upstream {address}"),
            ))
        })?;
    let listen = spec
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let proxy = FaultProxy::spawn(listen, upstream, started.servers.clone())
        .await
        .map_err(|error| {
            ByHandError::Start(FaultError::new(
                "proxy",
                format!("cannot listen on {listen}: {error}"),
            ))
        })?;
    let note = format!(
        "the fault proxy listens on {} in front of {address} for the duration; the fleet must already be pointed at {}",
        proxy.address(),
        proxy.address()
    );
    let entry = ProxyEntry {
        upstream: spec.upstream.clone(),
        listen: spec.listen,
        proxy,
    };
    Ok((entry, note))
}

/// Injects the fault, confirms it every second until `duration` passes or `shutdown` is
/// cancelled, then clears it and tears down what was started. Lines for the operator go to
/// stdout; the live line to stderr.
pub async fn run(
    checked: ByHandFault,
    shutdown: CancellationToken,
) -> Result<ByHandOutcome, ByHandError> {
    let kind = checked.fault.kind;
    let duration = checked.fault.duration;
    let started = Started {
        servers: CancellationToken::new(),
        files: HarnessFiles::default(),
    };
    let (environment, notes) = environment(&checked, &started).await?;
    for note in &notes {
        outln(crate::escape::terminal(note));
    }
    let occurrence = Occurrence {
        fault: 0,
        number: 1,
        at: Duration::ZERO,
        until: duration,
        hold_until: duration,
    };
    let injected = tokio::select! {
        injected = inject(&environment, &checked.fault, &occurrence) => injected,
        () = shutdown.cancelled() => {
            let removed = started.tear_down();
            return Ok(ByHandOutcome {
                target: "nothing (stopped before the fault was in place)".to_owned(),
                confirmed: false,
                last: Confirmation::not_in_effect("stopped before the fault was in place"),
                cleared: Ok("nothing to undo".to_owned()),
                files_removed: removed,
                interrupted: true,
                elapsed: Duration::ZERO,
            });
        }
    };
    let mut injected = injected.map_err(ByHandError::Inject)?;
    let start = Instant::now();
    let target = match checked.pid {
        Some(pid) => format!("pid {pid}"),
        None => injected.target(),
    };
    let injected_line = format!(
        "{kind} injected into {target} for {}",
        humantime::format_duration(duration)
    );
    outln(crate::escape::terminal(&injected_line));
    let (confirmed, last) = watch(&mut injected, start, duration, &shutdown).await;
    let interrupted = shutdown.is_cancelled() && start.elapsed() < duration;
    let cleared = injected.clear(false).await;
    let files_removed = started.tear_down();
    drop(environment);
    Ok(ByHandOutcome {
        target,
        confirmed,
        last,
        cleared,
        files_removed,
        interrupted,
        elapsed: start.elapsed().min(duration),
    })
}

/// Confirms every second until the end; returns whether it was ever in effect, and the last
/// confirmation.
async fn watch(
    injected: &mut ActiveFault,
    start: Instant,
    duration: Duration,
    shutdown: &CancellationToken,
) -> (bool, Confirmation) {
    let end = start + duration;
    let mut view = LiveView::new(duration);
    let mut confirmed = false;
    let mut last = Confirmation::not_in_effect("not confirmed yet");
    let mut tick = start;
    loop {
        let confirmation = tokio::select! {
            confirmation = tokio::time::timeout_at(end, injected.confirm()) => confirmation.ok(),
            () = shutdown.cancelled() => None,
        };
        if let Some(confirmation) = confirmation {
            confirmed |= confirmation.in_effect;
            last = confirmation;
            view.update(start.elapsed().min(duration), &last);
        }
        tick += CONFIRM_EVERY;
        if shutdown.is_cancelled() || Instant::now() >= end {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(tick.min(end)) => {}
            () = shutdown.cancelled() => break,
        }
        if Instant::now() >= end {
            break;
        }
    }
    view.finish();
    (confirmed, last)
}

/// The live line: indicatif on a terminal, a plain line every 5 s otherwise (and whenever
/// the fault goes in or out of effect).
#[derive(Debug)]
struct LiveView {
    bar: Option<ProgressBar>,
    total: Duration,
    last_plain: Option<(Instant, bool)>,
}

impl LiveView {
    fn new(total: Duration) -> Self {
        let bar = std::io::stderr()
            .is_terminal()
            .then(crate::console::live_bar);
        LiveView {
            bar,
            total,
            last_plain: None,
        }
    }

    fn update(&mut self, elapsed: Duration, confirmation: &Confirmation) {
        let line = progress_line(elapsed, self.total, confirmation);
        if let Some(bar) = &self.bar {
            bar.set_message(line);
            bar.tick();
            return;
        }
        let now = Instant::now();
        let due = self.last_plain.is_none_or(|(at, in_effect)| {
            in_effect != confirmation.in_effect
                || now.saturating_duration_since(at) >= PLAIN_LINE_EVERY
        });
        if due {
            self.last_plain = Some((now, confirmation.in_effect));
            errln(format_args!("{line}"));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `00:00:12 / 00:05:00  in effect       3 files (192 KiB) written into …`
pub fn progress_line(elapsed: Duration, total: Duration, confirmation: &Confirmation) -> String {
    format!(
        "{} / {}  {:<14} {}",
        crate::console::clock(elapsed),
        crate::console::clock(total),
        if confirmation.in_effect {
            "in effect"
        } else {
            "NOT in effect"
        },
        crate::escape::terminal_line(&confirmation.evidence)
    )
}

/// The lines printed at the end (evidence and errors, which may quote the fleet, escaped).
pub fn render_outcome(outcome: &ByHandOutcome) -> String {
    let mut text = String::new();
    let ended = if outcome.interrupted {
        format!(
            "stopped early after {}",
            crate::console::clock(outcome.elapsed)
        )
    } else {
        format!("ended after {}", crate::console::clock(outcome.elapsed))
    };
    let shown = |text: &str| crate::escape::line(text).into_owned();
    text.push_str(&format!(
        "{ended}; last seen: {}\n",
        shown(&outcome.last.evidence)
    ));
    match &outcome.cleared {
        Ok(note) => text.push_str(&format!("cleared: {}\n", shown(note))),
        Err(error) => text.push_str(&format!("clearing FAILED: {}\n", shown(&error.to_string()))),
    }
    if outcome.files_removed > 0 {
        text.push_str(&format!(
            "removed {} files voxsoak wrote\n",
            outcome.files_removed
        ));
    }
    if outcome.confirmed {
        text.push_str("the fault was in effect\n");
    } else {
        text.push_str(&format!(
            "the fault never took effect on {}\n",
            shown(&outcome.target)
        ));
    }
    crate::redact::text(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str, settings: &[&str]) -> ByHandRequest {
        ByHandRequest {
            kind: kind.to_owned(),
            duration: Duration::from_secs(3),
            settings: settings.iter().map(|text| (*text).to_owned()).collect(),
            pid: None,
            database_url_env: None,
            dir: None,
            allow_large_leaks: false,
            listen: None,
            allow_hosts: Vec::new(),
            seed: 1,
        }
    }

    fn error(request: &ByHandRequest) -> String {
        check(request).expect_err("invalid").to_string()
    }

    #[test]
    fn the_help_names_every_kind_and_parameter() {
        for kind in FaultKind::ALL {
            assert!(KINDS_HELP.contains(kind.name()), "{kind}");
            for parameter in kind.parameters() {
                if own_flag(parameter).is_some() {
                    continue;
                }
                assert!(KINDS_HELP.contains(parameter), "{kind} {parameter}");
            }
        }
    }

    #[test]
    fn settings_are_numbers_and_bools_else_strings() {
        let value = |text: &str| parse_setting(text).unwrap().1;
        assert_eq!(value("holders=3"), toml::Value::Integer(3));
        assert_eq!(value("fraction=0.5"), toml::Value::Float(0.5));
        assert_eq!(value("stall=true"), toml::Value::Boolean(true));
        assert_eq!(value("rate=1MiB/s"), toml::Value::String("1MiB/s".into()));
        assert_eq!(value("delay=2s"), toml::Value::String("2s".into()));
        assert_eq!(
            value("tool=a\"b = c"),
            toml::Value::String("a\"b = c".into())
        );
        assert!(parse_setting("holders").is_err());
    }

    #[test]
    fn parameters_are_validated_as_a_scenario_would_and_name_the_flag() {
        let mut db = request("db_pool_exhaustion", &["holders=0"]);
        db.database_url_env = Some("PATH".into());
        assert_eq!(
            error(&db),
            "--set holders: holders must be at least 1, found 0"
        );

        let mut leak = request("temp_file_leak", &["rate=fast"]);
        leak.dir = Some("/tmp".into());
        let message = error(&leak);
        assert!(
            message.starts_with("--set rate: rate: expected a rate"),
            "{message}"
        );
        assert!(!message.contains("voxsoak chaos:"), "{message}");

        let mut tts = request("tts_slow", &[]);
        tts.listen = Some("10.1.2.3:9000".into());
        assert!(error(&tts).starts_with("--listen: "), "{}", error(&tts));
        tts.listen = Some("127.0.0.1:9000".into());
        assert!(error(&tts).contains("delay"), "{}", error(&tts));

        let proxy = request(
            "proxy",
            &[
                "upstream=db.example.com:5432",
                "listen=127.0.0.1:6000",
                "down=true",
            ],
        );
        assert!(error(&proxy).contains("allow_hosts"), "{}", error(&proxy));
        let mut allowed = proxy.clone();
        allowed.allow_hosts = vec!["db.example.com".into()];
        let checked = check(&allowed).unwrap();
        assert!(matches!(checked.fault.fault, FaultSpec::Proxy(_)));
    }

    #[test]
    fn the_dir_given_is_declared_writable_but_never_a_system_dir() {
        let dir = tempfile::tempdir().unwrap();
        let resolved = dir.path().canonicalize().unwrap();
        let mut leak = request("temp_file_leak", &["file_size=64KiB"]);
        leak.dir = Some(dir.path().join("x/.."));
        let checked = check(&leak).unwrap();
        let FaultSpec::TempFileLeak(spec) = &checked.fault.fault else {
            panic!("{:?}", checked.fault.fault)
        };
        assert_eq!(
            spec.dir,
            crate::scenario::faults::LeakDir::Declared {
                dir: resolved.clone(),
                within: resolved
            }
        );

        leak.dir = Some("/etc".into());
        let message = error(&leak);
        assert!(
            message.starts_with("--dir: \"/etc\" resolves to ")
                && message.contains("the system directory /etc"),
            "{message}"
        );

        let mut large = request("temp_file_leak", &["max_total=20GiB"]);
        large.dir = Some(dir.path().to_path_buf());
        let message = error(&large);
        assert!(
            message.starts_with("--set max_total: ") && message.contains("add --allow-large-leaks"),
            "{message}"
        );
        large.allow_large_leaks = true;
        check(&large).unwrap();
        let mut stray = request("process_stall", &[]);
        stray.pid = Some(4_000_000);
        stray.allow_large_leaks = true;
        assert!(error(&stray).starts_with("--allow-large-leaks: "));
    }

    #[test]
    fn each_kind_needs_its_flag_and_refuses_the_others() {
        assert!(error(&request("process_stall", &[])).starts_with("--pid: "));
        assert!(error(&request("temp_file_leak", &[])).starts_with("--dir: "));
        assert!(error(&request("tts_429", &[])).starts_with("--listen: "));
        assert!(error(&request("db_pool_exhaustion", &[])).starts_with("--database-url-env: "));
        assert!(error(&request("proxy", &["down=true"])).starts_with("--set upstream: "));
        assert!(error(&request("nope", &[])).starts_with("KIND: unknown fault kind"));
        let mut stray = request("temp_file_leak", &[]);
        stray.dir = Some("/tmp".into());
        stray.pid = Some(1);
        assert!(error(&stray).starts_with("--pid: temp_file_leak does not use"));
        let mut own = request("temp_file_leak", &["dir=/tmp"]);
        own.dir = Some("/tmp".into());
        assert_eq!(error(&own), "--set dir: give it as --dir DIR");
        let mut stall = request("process_stall", &["holders=1"]);
        stall.pid = Some(4_000_000);
        assert!(
            error(&stall).contains("takes no parameters"),
            "{}",
            error(&stall)
        );
        stall.settings.clear();
        let checked = check(&stall).unwrap();
        assert_eq!(checked.fault.fault, FaultSpec::ProcessStall);
    }
}
