//! Subcommands, kept in the library so tests can drive the CLI in-process
//! (`Cli::try_parse_from` then [`main`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::run::{RunOptions, run};
use crate::scenario;
use crate::sink::{self, SinkOptions};
use crate::target::LISTENING_PREFIX;

/// Chaos and soak testing for real-time voice-agent fleets.
#[derive(Debug, Parser)]
#[command(name = "voxsoak", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and grade the fleet. Exit 0: every SLO passed; 1: an SLO failed;
    /// 2: the run could not be carried out.
    Run(RunArgs),
    /// Check a scenario file; errors give file:line:column. Nothing runs.
    Validate { scenario: PathBuf },
    /// Print the scenario's timeline (stages, arrivals, scripts, SLOs). Nothing runs.
    Plan { scenario: PathBuf },
    /// A minimal Twilio-speaking echo fleet for tests and benchmarks.
    Sink(SinkArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub scenario: PathBuf,
    /// Run directory for summary.json and journal.jsonl [default: reports/RUN_ID/]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the scenario's load duration (e.g. 90s, 2h): the timeline is cut there, or
    /// its last level is held until then.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Replace the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// No live progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Delay from the end of the caller's speech to the reply (never less than the 500 ms of
    /// silence that ends a caller turn).
    #[arg(long, default_value = "600ms", value_parser = parse_duration)]
    pub reply_delay: Duration,
    /// Length of each reply.
    #[arg(long, default_value = "800ms", value_parser = parse_duration)]
    pub reply_length: Duration,
    /// Greet the caller when the stream starts.
    #[arg(long)]
    pub greeting: bool,
    /// Require X-Twilio-Signature on webhooks and stream handshakes.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{error} (expected e.g. 300ms, 30s, 1m30s)"))
}

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { scenario } => match scenario::load(&scenario) {
            Ok(loaded) => {
                println!(
                    "{}: ok ({}, {} script(s))",
                    scenario.display(),
                    loaded.name,
                    loaded.scripts.len()
                );
                exit::PASS
            }
            Err(error) => {
                eprintln!("{}", chain(&error));
                exit::HARNESS_ERROR
            }
        },
        Command::Plan { scenario } => match scenario::load(&scenario) {
            Ok(loaded) => {
                print!("{}", scenario::render_plan(&loaded));
                exit::PASS
            }
            Err(error) => {
                eprintln!("{}", chain(&error));
                exit::HARNESS_ERROR
            }
        },
        Command::Run(args) => {
            with_runtime(|shutdown| async move { run_command(args, shutdown).await })
        }
        Command::Sink(args) => {
            with_runtime(|shutdown| async move { sink_command(args, shutdown).await })
        }
    }
}

fn with_runtime<F, Fut>(body: F) -> i32
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let _ = crate::observe::process::raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("voxsoak: could not start the async runtime: {error}");
            return exit::HARNESS_ERROR;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        body(shutdown).await
    })
}

/// Ctrl-C or SIGTERM cancels the run; the run then ends its calls and writes its reports.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("voxsoak: stopping (signal received); ending calls and writing reports");
    shutdown.cancel();
}

async fn run_command(args: RunArgs, shutdown: CancellationToken) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("voxsoak: cannot find its own executable: {error}");
            return exit::HARNESS_ERROR;
        }
    };
    let options = RunOptions {
        scenario: args.scenario,
        out: args.out,
        duration: args.duration,
        seed: args.seed,
        progress: !args.quiet,
        exe,
    };
    match run(options, shutdown).await {
        Ok(outcome) => {
            print!("{}", outcome.summary.render_text());
            println!("  reports    {}", outcome.out_dir.display());
            outcome.summary.verdict.exit_code()
        }
        Err(error) => {
            eprintln!("voxsoak: {}", chain(&error));
            exit::HARNESS_ERROR
        }
    }
}

/// An error and its causes on one line: "cannot read x: No such file or directory".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn sink_command(args: SinkArgs, shutdown: CancellationToken) -> i32 {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("voxsoak sink: cannot listen on {}: {error}", args.listen);
            return exit::HARNESS_ERROR;
        }
    };
    match listener.local_addr() {
        Ok(address) => println!("{LISTENING_PREFIX}{address}"),
        Err(error) => {
            eprintln!("voxsoak sink: {error}");
            return exit::HARNESS_ERROR;
        }
    }
    let options = SinkOptions {
        reply_delay: args.reply_delay,
        reply_length: args.reply_length,
        greeting: args.greeting,
        auth_token: args.auth_token,
    };
    match sink::serve(listener, options, shutdown).await {
        Ok(()) => exit::PASS,
        Err(error) => {
            eprintln!("voxsoak sink: {error}");
            exit::HARNESS_ERROR
        }
    }
}
