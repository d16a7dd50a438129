//! The indie fleet: a second, minimal voice-agent server written for the tests, sharing no
//! code with the reference fleet (`src/fleet`) nor with the harness's protocol code
//! (`src/twilio`, `src/standin`, `src/audio`). voxsoak grades it as an external fleet, so
//! the verdict tests (`indie_verdicts`) prove voxsoak's verdicts on a fleet it did not write.
//!
//! It speaks Twilio Media Streams (`POST /voice` answers `<Connect><Stream>` TwiML,
//! `GET /stream` takes `connected`, `start`, `media`, `mark`, `dtmf`, `stop`), finds the end
//! of each caller turn by energy (500 ms of near-silence after speech), asks an
//! OpenAI-compatible LLM (`stream: false`, one tool it runs in memory), synthesises the
//! answer with an OpenAI-compatible TTS (WAV through a scratch file, no request id headers),
//! and sends it back as mu-law `media` frames, all at once, followed by a `mark`. It has its
//! own metric names on `GET /metrics` (`indie_memory_rss_bytes`, `indie_scratch_dir_bytes`,
//! `indie_calls_handled_total`, `indie_tts_status_total{code="429"}`, …), `GET /health`
//! (503 while its scratch dir is over budget or, `never_recovers`, once wedged), and its own
//! alerts (`SpeechBackendThrottled`, `ToolArgumentsRejected`, `ScratchDirFull`) posted in the
//! Alertmanager webhook format.
//!
//! One process per fleet: the test binary runs itself with
//! `--exact indie_fleet::serve --ignored --nocapture` and the fleet's settings in the
//! environment (see [`process::IndieFleet`]), so a crash is a real process exit. By hand:
//!
//! ```sh
//! INDIE_FLEET_BEHAVIOUR=healthy \
//! INDIE_FLEET_LLM_URL=http://127.0.0.1:9101/v1 INDIE_FLEET_TTS_URL=http://127.0.0.1:9100/v1 \
//! INDIE_FLEET_ALERT_URL=http://127.0.0.1:9093/alerts INDIE_FLEET_SCRATCH_DIR=/tmp/indie \
//! cargo test --test tests indie_fleet::serve -- --exact --ignored --nocapture
//! ```
//!
//! | variable | default | what |
//! | --- | --- | --- |
//! | `INDIE_FLEET_BEHAVIOUR` | none: `serve` returns at once | see [`Behaviour`] |
//! | `INDIE_FLEET_LISTEN` | `127.0.0.1:0` | the line `indie fleet listening on ADDR` says where |
//! | `INDIE_FLEET_LLM_URL`, `INDIE_FLEET_TTS_URL` | required | OpenAI-style base URLs, ending in `/v1` |
//! | `INDIE_FLEET_ALERT_URL` | none: no alerts posted | an Alertmanager webhook receiver |
//! | `INDIE_FLEET_SCRATCH_DIR` | required | where TTS answers are written while they play |
//! | `INDIE_FLEET_SCRATCH_BUDGET` | `2097152` | bytes in the scratch dir above which it is full |
//! | `INDIE_FLEET_PID_FILE` | none | its pid is written there |
//! | `INDIE_FLEET_EXIT_WITH_STDIN` | unset | `1`: exit when stdin closes (the parent died) |

mod agent;
mod alerts;
mod backoff;
mod end_to_end;
pub mod process;
mod server;
mod sound;
mod speech;
mod tts;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use server::LLM_FAILED;

/// What the indie fleet gets wrong, one per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Backs off exponentially (from 250 ms, doubling, ±20% jitter, never before
    /// `Retry-After`), gives up after 4 s with an apology prompt, refuses bad tool
    /// arguments, alerts at once and resolves after, sweeps its scratch dir.
    Healthy,
    /// Retries speech every 150 ms, no jitter, no growth, `Retry-After` ignored.
    ConstantRetries,
    /// Healthy, but never posts an alert.
    NoAlerts,
    /// Healthy, but each alert goes out 40 s after its condition first held.
    LateAlerts,
    /// A tool call with empty or malformed arguments makes the process exit with status 1.
    CrashOnBadInput,
    /// After the first TTS 429, `/health` stays 503 and no call is answered again.
    NeverRecovers,
    /// Never removes a scratch file.
    LeaksTempFiles,
}

impl Behaviour {
    pub const ALL: [Behaviour; 7] = [
        Behaviour::Healthy,
        Behaviour::ConstantRetries,
        Behaviour::NoAlerts,
        Behaviour::LateAlerts,
        Behaviour::CrashOnBadInput,
        Behaviour::NeverRecovers,
        Behaviour::LeaksTempFiles,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Healthy => "healthy",
            Behaviour::ConstantRetries => "constant_retries",
            Behaviour::NoAlerts => "no_alerts",
            Behaviour::LateAlerts => "late_alerts",
            Behaviour::CrashOnBadInput => "crash_on_bad_input",
            Behaviour::NeverRecovers => "never_recovers",
            Behaviour::LeaksTempFiles => "leaks_temp_files",
        }
    }
}

/// The fleet's settings, from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub behaviour: Behaviour,
    pub listen: SocketAddr,
    pub llm_url: String,
    pub tts_url: String,
    pub alert_url: Option<String>,
    pub scratch_dir: PathBuf,
    pub scratch_budget: u64,
    pub pid_file: Option<PathBuf>,
}

impl Config {
    /// None when `INDIE_FLEET_BEHAVIOUR` is unset (nothing to serve); an error naming the
    /// variable that is missing or wrong.
    fn from_env() -> Result<Option<Config>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let Some(behaviour) = var("INDIE_FLEET_BEHAVIOUR") else {
            return Ok(None);
        };
        let behaviour = Behaviour::ALL
            .into_iter()
            .find(|known| known.name() == behaviour)
            .ok_or_else(|| {
                format!(
                    "INDIE_FLEET_BEHAVIOUR={behaviour}: expected one of {:?}",
                    Behaviour::ALL.map(Behaviour::name)
                )
            })?;
        let required = |name: &str| var(name).ok_or_else(|| format!("{name} is required"));
        let listen = var("INDIE_FLEET_LISTEN").unwrap_or_else(|| "127.0.0.1:0".to_owned());
        Ok(Some(Config {
            behaviour,
            listen: listen
                .parse()
                .map_err(|error| format!("INDIE_FLEET_LISTEN={listen}: {error}"))?,
            llm_url: required("INDIE_FLEET_LLM_URL")?,
            tts_url: required("INDIE_FLEET_TTS_URL")?,
            alert_url: var("INDIE_FLEET_ALERT_URL"),
            scratch_dir: required("INDIE_FLEET_SCRATCH_DIR")?.into(),
            scratch_budget: match var("INDIE_FLEET_SCRATCH_BUDGET") {
                Some(bytes) => bytes
                    .parse()
                    .map_err(|error| format!("INDIE_FLEET_SCRATCH_BUDGET={bytes}: {error}"))?,
                None => 2 << 20,
            },
            pid_file: var("INDIE_FLEET_PID_FILE").map(PathBuf::from),
        }))
    }
}

/// The fleet's process: serves until killed when `INDIE_FLEET_BEHAVIOUR` is set, and does
/// nothing otherwise (so `cargo test -- --ignored` passes through it).
#[test]
#[ignore = "the indie fleet's server process, started by the indie verdict tests"]
fn serve() {
    let config = match Config::from_env() {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(problem) => panic!("indie fleet: {problem}"),
    };
    if std::env::var("INDIE_FLEET_EXIT_WITH_STDIN").as_deref() == Ok("1") {
        // The parent holds our stdin: when it dies, the read ends and so does the fleet.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(error) = runtime.block_on(server::serve(config)) {
        panic!("indie fleet: {error}");
    }
}
