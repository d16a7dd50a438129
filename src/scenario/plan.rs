//! `voxsoak plan`: what a scenario will do, printed; nothing runs.

use std::fmt::Write as _;
use std::time::Duration;

use super::model::*;

fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn utterance_name(
    scenario: &Scenario,
    source: &UtteranceSource,
    synthetic: &[(Duration, u64)],
) -> String {
    match *source {
        UtteranceSource::Fixture(index) => scenario.calls.fixtures[index]
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        UtteranceSource::Synthetic(index) => {
            format!("synthetic-{index} ({})", human(synthetic[index].0))
        }
    }
}

/// The plan as text.
pub fn render_plan(scenario: &Scenario) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario  {} ({})",
        scenario.name,
        scenario.path.display()
    );
    if let Some(description) = &scenario.description {
        let _ = writeln!(out, "          {description}");
    }
    let _ = writeln!(out, "seed      {}", scenario.seed);
    let target = match &scenario.target {
        Target::Sink(sink) => format!(
            "voxsoak sink, started by the harness on a free loopback port (reply delay {}, reply length {})",
            human(sink.reply_delay),
            human(sink.reply_length)
        ),
        Target::External(external) => {
            let (kind, url) = match &external.endpoint {
                Endpoint::Stream(url) => ("stream", url),
                Endpoint::Webhook(url) => ("voice webhook", url),
            };
            let signed = external
                .auth_token_env
                .as_ref()
                .map(|name| format!(", signed with the token in ${name}"))
                .unwrap_or_default();
            format!("{kind} {url}{signed}")
        }
    };
    let _ = writeln!(out, "target    {target}");
    let _ = writeln!(out, "allowed   {}", scenario.allow_hosts.join(", "));
    let _ = writeln!(out, "\nload");
    match &scenario.load {
        Load::Stages(stages) => {
            let mut start = Duration::ZERO;
            let mut level = 0;
            for stage in stages {
                let end = start + stage.duration;
                let what = if stage.to == level {
                    format!("hold {level} calls")
                } else {
                    format!("ramp {level} -> {} calls", stage.to)
                };
                let _ = writeln!(
                    out,
                    "  {}-{}  {:<24} ({})",
                    clock(start),
                    clock(end),
                    what,
                    human(stage.duration)
                );
                start = end;
                level = stage.to;
            }
            let _ = writeln!(
                out,
                "  total {}, peak {} concurrent calls (closed model: a call that ends is replaced)",
                human(start),
                scenario.load.peak_concurrency()
            );
        }
        Load::Arrival(rate) => {
            let expected = scenario.arrival_offsets().count();
            let pattern = match rate.pattern {
                ArrivalPattern::Uniform => "uniform",
                ArrivalPattern::Poisson => "poisson",
            };
            let _ = writeln!(
                out,
                "  open model: {} calls/min ({pattern}) for {}, about {expected} calls; above {} in progress a call is dropped",
                rate.calls_per_minute,
                human(rate.duration),
                rate.max_concurrent
            );
            let first: Vec<String> = scenario
                .arrival_offsets()
                .take(10)
                .map(|offset| format!("{:.2}s", offset.as_secs_f64()))
                .collect();
            let _ = writeln!(out, "  first arrivals: {}", first.join(", "));
        }
    }
    let calls = &scenario.calls;
    let _ = writeln!(out, "\ncalls");
    let _ = writeln!(
        out,
        "  connect timeout {}, turn timeout {}, reply silence {}, max call {}{}",
        human(calls.connect_timeout),
        human(calls.turn_timeout),
        human(calls.reply_silence),
        human(calls.max_call_duration),
        if calls.wait_for_greeting {
            ", waits for the greeting"
        } else {
            ""
        }
    );
    let synthetic = scenario.synthetic_specs();
    if calls.fixtures.is_empty() {
        let _ = writeln!(out, "  fixtures: none (synthetic speech only)");
    } else {
        for fixture in &calls.fixtures {
            let _ = writeln!(out, "  fixture  {}", fixture.display());
        }
    }
    let _ = writeln!(
        out,
        "  synthetic pool: {} utterances of {} to {}",
        calls.synthetic.count,
        human(calls.synthetic.min),
        human(calls.synthetic.max)
    );
    let _ = writeln!(out, "\nscripts");
    for script in &scenario.scripts {
        let body = match &script.body {
            ScriptBody::Turns { min, max } if min == max => format!("{min} turns"),
            ScriptBody::Turns { min, max } => format!("{min} to {max} turns"),
            ScriptBody::Steps(steps) => format!("{} steps", steps.len()),
        };
        let _ = writeln!(
            out,
            "  {:<20} weight {:<4} {body}",
            script.name, script.weight
        );
    }
    let _ = writeln!(out, "\nfirst calls");
    for index in 0..5 {
        let choice = scenario.choose_call(index);
        let steps: Vec<String> = choice
            .steps
            .iter()
            .map(|step| match step {
                PlannedStep::Say { utterance, listen } => format!(
                    "say {}{}",
                    utterance_name(scenario, utterance, &synthetic),
                    if *listen { ", listen" } else { "" }
                ),
                PlannedStep::Dtmf { digits, listen } => {
                    format!("dtmf {digits}{}", if *listen { ", listen" } else { "" })
                }
                PlannedStep::Pause(pause) => format!("pause {}", human(*pause)),
                PlannedStep::Hangup => "hang up".into(),
            })
            .collect();
        let _ = writeln!(
            out,
            "  #{index} {}: {}",
            scenario.scripts[choice.script].name,
            steps.join("; ")
        );
    }
    let _ = writeln!(out, "\nSLOs");
    let slo = &scenario.slo;
    let mut any = false;
    if let Some(pct) = slo.call_success_min_pct {
        any = true;
        let _ = writeln!(out, "  call_success       >= {pct}%");
    }
    for (name, bound) in [
        ("response_p95", slo.response_p95_max),
        ("response_p99", slo.response_p99_max),
        ("first_audio_p95", slo.first_audio_p95_max),
        ("pacing_jitter_p99", slo.pacing_jitter_p99_max),
    ] {
        if let Some(bound) = bound {
            any = true;
            let _ = writeln!(out, "  {name:<18} <= {}", human(bound));
        }
    }
    if !any {
        let _ = writeln!(out, "  none");
    }
    out
}
