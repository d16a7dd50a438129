//! Starting the indie fleet as its own process: this test binary run again with only
//! `indie_fleet::serve` selected and the fleet's settings in the environment.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Behaviour;
use super::server::LISTENING;

/// Where the fleet finds its dependencies and puts its files.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// OpenAI-style base URLs, ending in `/v1`.
    pub llm_url: String,
    pub tts_url: String,
    pub alert_url: Option<String>,
    pub scratch_dir: PathBuf,
    pub scratch_budget: Option<u64>,
    pub pid_file: Option<PathBuf>,
}

/// Lines of output kept for failure messages.
const KEPT_LINES: usize = 200;

/// A running indie fleet; killed when dropped.
#[derive(Debug)]
pub struct IndieFleet {
    child: Child,
    /// Held open: the fleet exits when it closes (this process died).
    _stdin: ChildStdin,
    pub address: SocketAddr,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl IndieFleet {
    /// Starts the fleet and waits until it listens.
    pub fn start(behaviour: Behaviour, wiring: &Wiring) -> IndieFleet {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args(["--exact", "indie_fleet::serve", "--ignored", "--nocapture"])
            .env("INDIE_FLEET_BEHAVIOUR", behaviour.name())
            .env("INDIE_FLEET_LLM_URL", &wiring.llm_url)
            .env("INDIE_FLEET_TTS_URL", &wiring.tts_url)
            .env("INDIE_FLEET_SCRATCH_DIR", &wiring.scratch_dir)
            .env("INDIE_FLEET_EXIT_WITH_STDIN", "1")
            .env_remove("INDIE_FLEET_LISTEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in [
            ("INDIE_FLEET_ALERT_URL", wiring.alert_url.clone()),
            (
                "INDIE_FLEET_SCRATCH_BUDGET",
                wiring.scratch_budget.map(|bytes| bytes.to_string()),
            ),
            (
                "INDIE_FLEET_PID_FILE",
                wiring
                    .pid_file
                    .as_ref()
                    .map(|path| path.display().to_string()),
            ),
        ] {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command.spawn().expect("start the indie fleet");
        let stdin = child.stdin.take().expect("piped stdin");
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (listening, address) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        keep_lines(stdout, Arc::clone(&output), Some(listening));
        keep_lines(stderr, Arc::clone(&output), None);
        let mut fleet = IndieFleet {
            child,
            _stdin: stdin,
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            output,
        };
        match address.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => fleet.address = address,
            Err(_) => panic!(
                "the indie fleet ({}) did not say where it listens:\n{}",
                behaviour.name(),
                fleet.output()
            ),
        }
        fleet
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the indie fleet")
    }

    /// Its last lines of output, stdout and stderr mixed.
    pub fn output(&self) -> String {
        let lines = self.output.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for IndieFleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `pipe` line by line into `kept` (the last [`KEPT_LINES`]); the first line saying
/// where the fleet listens goes to `listening`.
fn keep_lines(
    pipe: impl std::io::Read + Send + 'static,
    kept: Arc<Mutex<VecDeque<String>>>,
    mut listening: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else {
                return;
            };
            // libtest may print `test indie_fleet::serve ... ` in front of it.
            if let Some(rest) = line.split(LISTENING).nth(1) {
                let address = rest
                    .split_whitespace()
                    .next()
                    .and_then(|text| text.parse().ok());
                if let (Some(sender), Some(address)) = (listening.take(), address) {
                    let _ = sender.send(address);
                }
            }
            let mut kept = kept.lock().unwrap();
            if kept.len() >= KEPT_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
}
