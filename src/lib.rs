//! voxsoak: a chaos and soak testing harness for real-time voice-agent fleets.
//!
//! The modules form layers, bottom first; each imports only layers below it (the table is
//! `layers.toml`, and `tests/layers.rs` holds the code to it):
//!
//! ```text
//! run, cli, main        the run as a story of steps; the command line
//! report, plan, live    rendering: summary.json and the terminal summary; `voxsoak plan`;
//!                       the harness's own live metrics page
//! grade                 judgement: reads journal records only, gives SLO verdicts
//! producers             call, load, target, observe, chaos, cleanup (write the journal);
//!                       standin, fleet, sink (servers that never import the harness)
//! scenario, detect      the model: parse + validate; the grading plan and detection rules
//! journal, contract     records every reader needs; plain data the model shares
//! twilio, audio         the wire and the sound
//! base                  units, exit, redact, escape, console, logging, procinfo,
//!                       failure, request_body, http_serve
//! ```
//!
//! - [`scenario`] parses a scenario file in two phases (raw serde types, then a validated
//!   model); every error carries file, line and column. It imports nothing that runs.
//!   Each fault kind is a line in the registry of [`scenario::faults`] and a spec in its
//!   family's file there: parameters, validation, plan text, default detection, help.
//! - [`contract`] is the plain data the model names and the runners carry out: the
//!   reference fleet's bugs and settings, what a stand-in does wrong, how a pool is taken.
//! - [`detect`] is the grading plan written into the journal and the one detection engine
//!   that both the live observers and the grader run, so they agree by construction.
//! - [`journal`] is the run journal (JSON lines) and the records read back from it.
//! - [`twilio`] is the wire: Media Streams messages exactly as Twilio sends them, G.711
//!   mu-law, the voice webhook, its signature and TwiML.
//! - [`audio`] turns WAV fixtures and synthetic speech into 20 ms mu-law frames, and finds
//!   speech in what the fleet sends back.
//! - [`call`] is one simulated Twilio call: webhook, WebSocket, paced media, marks, DTMF,
//!   and what it measured.
//! - [`load`] decides when calls start (stages of concurrency, or an open arrival rate) and
//!   runs them; calls report to one aggregating actor over a channel.
//! - [`target`] resolves the fleet under test, starting it as a child process if asked.
//! - [`observe`] watches the fleet as an operator would: health, metrics, alerts, logs,
//!   its process and temp dir.
//! - [`chaos`] injects faults on a schedule, confirms them and always undoes them; each
//!   family of fault kinds has its fault object (inject, confirm, clear) in a file.
//! - [`grade`] reads the journal back and turns it into SLO verdicts and the exit code.
//! - [`report`] writes `summary.json` and the terminal summary; [`plan`] renders
//!   `voxsoak plan`.
//! - [`live`] serves the harness's own metrics while a run goes on (`--metrics-listen`):
//!   the journal's records folded as they are written, in the Prometheus text format.
//! - [`sink`] is a minimal Twilio-speaking echo fleet, the harness's own baseline target.
//! - [`fleet`] is the reference fleet, a real small voice-agent server with switchable
//!   production bugs; it stands apart from the harness and shares only [`twilio`],
//!   [`audio`], [`contract`] and [`standin`] (the OpenAI-compatible LLM and TTS stand-ins).
//! - [`units`] parses and writes sizes and durations; [`exit`] names the exit codes.
//! - [`redact`] masks secrets (URL credentials, tokens) and [`escape`] makes outside text
//!   (the fleet's, the scenario's names) safe to show, in everything written or printed.
//! - [`console`] writes lines and the live view for the terminal, never panicking on a
//!   closed pipe or a hung-up terminal; [`logging`] sends the harness's `tracing` events
//!   to stderr and the run directory's `harness.log`; [`procinfo`] reads a process's memory and CPU from
//!   `/proc`; [`failure`] says why a request to the fleet got no answer;
//!   [`request_body`] reads bodies from untrusted clients (the alert receiver's, the
//!   stand-ins') to a limit and within a deadline; [`http_serve`] serves every HTTP server
//!   the harness runs, with a deadline on request headers and a bound on connections.
//! - [`cleanup`] keeps what a run leaves on the machine findable and removable, also after
//!   a `kill -9` of the harness (per-run temp roots, pid files, `voxsoak clean`).
//! - [`run`] wires the pieces for `voxsoak run`; [`cli`] is the command line.

pub mod audio;
pub mod call;
pub mod chaos;
pub mod cleanup;
pub mod cli;
pub mod console;
pub mod contract;
pub mod detect;
pub mod escape;
pub mod exit;
pub mod failure;
pub mod fleet;
pub mod grade;
pub mod http_serve;
pub mod journal;
pub mod live;
pub mod load;
pub mod logging;
pub mod observe;
pub mod plan;
pub mod procinfo;
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
