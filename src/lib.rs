//! voxsoak: a chaos and soak testing harness for real-time voice-agent fleets.
//!
//! Data flows one way through the modules, in this order:
//!
//! ```text
//! scenario (TOML) ─► load shaper ─► call driver ─► events ─► aggregator ─► report
//! ```
//!
//! - [`scenario`] parses a scenario file in two phases (raw serde types, then a validated
//!   model) and renders the plan; every error carries file, line and column.
//! - [`twilio`] is the wire: Media Streams messages exactly as Twilio sends them, G.711
//!   mu-law, the voice webhook, its signature and TwiML.
//! - [`audio`] turns WAV fixtures and synthetic speech into 20 ms mu-law frames, and finds
//!   speech in what the fleet sends back.
//! - [`call`] is one simulated Twilio call: webhook, WebSocket, paced media, marks, DTMF,
//!   and what it measured.
//! - [`load`] decides when calls start (stages of concurrency, or an open arrival rate) and
//!   runs them; calls report to one aggregating actor over a channel.
//! - [`report`] turns the aggregate into the run directory (`summary.json`) and the terminal
//!   summary.
//! - [`grade`] turns the totals into SLO verdicts and the exit code.
//! - [`observe`] reads processes from the outside (memory, CPU).
//! - [`target`] resolves the fleet under test, starting it as a child process if asked.
//! - [`sink`] is a minimal Twilio-speaking echo fleet, the harness's own baseline target.
//! - [`fleet`] is the reference fleet, a real small voice-agent server with switchable
//!   production bugs; it stands apart from the harness and shares only [`twilio`],
//!   [`audio`] and [`standin`] (the OpenAI-compatible LLM and TTS stand-ins).
//! - [`units`] parses sizes such as `512MiB`.
//! - [`request_body`] reads bodies from untrusted clients (the alert receiver's, the
//!   stand-ins') to a limit and within a deadline.
//! - [`redact`] masks secrets (URL credentials, tokens) and [`escape`] makes outside text
//!   (the fleet's, the scenario's names) safe to show, in everything written or printed.
//! - [`run`] wires the pieces for `voxsoak run`.
//! - [`cleanup`] keeps what a run leaves on the machine findable and removable, also after
//!   a `kill -9` of the harness (per-run temp roots, pid files, `voxsoak clean`).
//! - [`console`] writes lines for the terminal that never panic on a closed pipe or a
//!   hung-up terminal; the fleet and the sink use it too, as they use [`units`].

pub mod audio;
pub mod call;
pub mod chaos;
pub mod cleanup;
pub mod cli;
pub mod console;
pub mod escape;
pub mod exit;
pub mod fleet;
pub mod grade;
pub mod journal;
pub mod load;
pub mod observe;
pub mod redact;
pub mod report;
pub mod request_body;
pub mod run;
pub mod scenario;
pub mod sink;
pub mod standin;
pub mod target;
pub mod twilio;
pub mod units;
