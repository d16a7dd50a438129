//! The fleet under test: an external URL, or a fleet the harness starts itself as a child
//! process on a free port (and always stops).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use url::Url;

use crate::call::CallEndpoint;
use crate::scenario::{Endpoint, SinkOptions, Target};

/// How long a child fleet may take to print the address it listens on.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the target may take to accept a TCP connection before the run starts.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first line a spawned `voxsoak sink` prints: `voxsoak sink listening on ADDR`.
pub const LISTENING_PREFIX: &str = "voxsoak sink listening on ";

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("could not start {what} ({exe}): {source}")]
    Spawn {
        what: &'static str,
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not report its address within {timeout:?}{}", stderr_hint(.stderr))]
    NoAddress {
        what: &'static str,
        timeout: Duration,
        stderr: String,
    },
    #[error("target {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the auth token variable {name} named by [target] auth_token_env is not set")]
    MissingToken { name: String },
}

fn stderr_hint(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; it said: {}", stderr.trim())
    }
}

/// A fleet process the harness started; killed when dropped, however the run ends.
#[derive(Debug)]
pub struct SpawnedFleet {
    child: Child,
}

impl SpawnedFleet {
    /// Stops the fleet: SIGTERM, then SIGKILL if it does not exit within a few seconds.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with a pid we own and a valid signal number.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The endpoint calls go to, and the process behind it when the harness started it.
#[derive(Debug)]
pub struct ResolvedTarget {
    pub endpoint: CallEndpoint,
    pub auth_token: Option<String>,
    pub fleet: Option<SpawnedFleet>,
    /// A short description for the summary (`sink (spawned) ws://…`, or the URL).
    pub description: String,
}

/// Resolves the scenario's target, starting the fleet when the scenario asks for one.
/// `exe` is the voxsoak binary to start (`std::env::current_exe()` from the CLI).
pub async fn resolve(target: &Target, exe: &Path) -> Result<ResolvedTarget, TargetError> {
    match target {
        Target::Sink(options) => {
            let (fleet, address) = spawn_sink(exe, options).await?;
            let url = Url::parse(&format!("ws://{address}/stream"))
                .expect("a socket address makes a valid URL");
            Ok(ResolvedTarget {
                description: format!("sink (started by voxsoak) {url}"),
                endpoint: CallEndpoint::Stream {
                    url,
                    custom_parameters: Default::default(),
                },
                auth_token: None,
                fleet: Some(fleet),
            })
        }
        Target::Embedded(_) => todo!("embedded fleet"),
        Target::External(external) => {
            let auth_token = match &external.auth_token_env {
                Some(name) => Some(
                    std::env::var(name)
                        .map_err(|_| TargetError::MissingToken { name: name.clone() })?,
                ),
                None => None,
            };
            let (endpoint, description) = match &external.endpoint {
                Endpoint::Stream(url) => (
                    CallEndpoint::Stream {
                        url: url.clone(),
                        custom_parameters: external.custom_parameters.clone(),
                    },
                    url.to_string(),
                ),
                Endpoint::Webhook(url) => {
                    (CallEndpoint::Webhook { url: url.clone() }, url.to_string())
                }
            };
            Ok(ResolvedTarget {
                endpoint,
                auth_token,
                fleet: None,
                description,
            })
        }
    }
}

async fn spawn_sink(
    exe: &Path,
    options: &SinkOptions,
) -> Result<(SpawnedFleet, String), TargetError> {
    let mut command = Command::new(exe);
    command
        .arg("sink")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--reply-delay")
        .arg(humantime::format_duration(options.reply_delay).to_string())
        .arg("--reply-length")
        .arg(humantime::format_duration(options.reply_length).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: Ctrl-C in the terminal reaches the harness, which ends the
        // calls and then stops the fleet, instead of killing the fleet under live calls.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| TargetError::Spawn {
        what: "voxsoak sink",
        exe: exe.to_path_buf(),
        source,
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let address = tokio::time::timeout(SPAWN_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(address) = line.strip_prefix(LISTENING_PREFIX) {
                return Some(address.trim().to_string());
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(address) = address else {
        let _ = child.start_kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = tokio::time::timeout(Duration::from_secs(1), pipe.read_to_string(&mut stderr))
                .await;
        }
        return Err(TargetError::NoAddress {
            what: "voxsoak sink",
            timeout: SPAWN_TIMEOUT,
            stderr,
        });
    };
    // Keep draining both pipes so the child never blocks on a full one.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    if let Some(stderr) = child.stderr.take() {
        let mut errors = BufReader::new(stderr).lines();
        tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });
    }
    Ok((SpawnedFleet { child }, address))
}

/// Checks that the target accepts TCP connections before any call is placed, so an
/// unreachable target is a harness error (exit 2), not thousands of failed calls.
pub async fn preflight(endpoint: &CallEndpoint) -> Result<(), TargetError> {
    let url = match endpoint {
        CallEndpoint::Stream { url, .. } | CallEndpoint::Webhook { url } => url,
    };
    let unreachable = |reason: String| TargetError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let host = url
        .host_str()
        .ok_or_else(|| unreachable("the URL has no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| unreachable("the URL has no port".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(PREFLIGHT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable(format!(
            "no TCP answer within {PREFLIGHT_TIMEOUT:?}"
        ))),
    }
}
