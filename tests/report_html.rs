//! `report.html` in a real browser: `voxsoak report` on a journal written by hand, the page
//! opened in headless Chromium (Debian's `chromium`), which must draw it (a screenshot),
//! show the verdict and every fault, log nothing to its console (the check shown to catch a
//! `console.error` and a Content-Security-Policy refusal), and run no script, even with a
//! fleet that sends `<script>` in every text.
//!
//! Without Chromium the tests print "skipped: …" and pass, unless
//! `VOXSOAK_REQUIRE_CHROMIUM=1` (CI sets it): then they fail. `VOXSOAK_CHROMIUM` names the
//! browser when it is not `chromium` or `chromium-browser` on the PATH.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::voxsoak_exe;

/// How long one Chromium run may take on a busy machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

fn chromium_required() -> bool {
    std::env::var("VOXSOAK_REQUIRE_CHROMIUM").is_ok_and(|value| value == "1")
}

/// The browser to use, or None (after saying the test is skipped) when there is none.
fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("VOXSOAK_CHROMIUM").map(PathBuf::from);
    let found = named.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        if chromium_required() {
            panic!(
                "no chromium on the PATH and VOXSOAK_REQUIRE_CHROMIUM=1 (apt-get install chromium, or set VOXSOAK_CHROMIUM)"
            );
        }
        eprintln!(
            "skipped: no chromium on the PATH (apt-get install chromium, or set VOXSOAK_CHROMIUM)"
        );
    }
    found
}

/// What Chromium made of a page.
struct Rendered {
    /// The DOM after loading, serialized (`--dump-dom`).
    dom: String,
    /// Messages the page logged to its console (script errors, refused content).
    console: Vec<String>,
}

/// Runs headless Chromium on `page` with `extra` arguments; its stdout and the console
/// lines of its log.
fn run_chromium(browser: &Path, page: &Path, profile: &Path, extra: &[String]) -> Rendered {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Read both pipes on threads, so a chatty browser never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish {} in {BROWSER_TIMEOUT:?}",
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().unwrap().unwrap_or_default();
    let log = err.join().unwrap().unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}):\n{log}");
    Rendered {
        dom,
        console: log
            .lines()
            .filter(|line| line.contains(":CONSOLE"))
            .map(str::to_owned)
            .collect(),
    }
}

/// Screenshot of `page` into `png`, then its DOM: what Chromium made of it.
fn open_in_chromium(browser: &Path, page: &Path) -> Rendered {
    let dir = page.parent().unwrap();
    let png = dir.join("report.png");
    let shot = run_chromium(
        browser,
        page,
        &dir.join("profile-shot"),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".to_owned(),
        ],
    );
    let image = std::fs::read(&png).expect("the screenshot was written");
    assert!(
        image.starts_with(b"\x89PNG\r\n\x1a\n") && image.len() > 10_000,
        "a PNG with something drawn on it: {} bytes",
        image.len()
    );
    let mut rendered = run_chromium(
        browser,
        page,
        &dir.join("profile-dom"),
        &["--dump-dom".to_owned()],
    );
    rendered.console.extend(shot.console);
    rendered
}

/// A 10-minute run written by hand as the harness journals it, with every series of the
/// timeline and three faults (one detected and recovered, one undetected, one recovered
/// slowly); `evil` is put into every text the fleet or the scenario gives.
fn journal(dir: &Path, evil: &str) {
    let mut records = vec![
        json!({"event": "run_started", "t_s": 0.0, "at": "2026-11-23T14:00:00.000Z",
            "run_id": "html-1", "scenario": format!("smoke{evil}"), "scenario_path": "smoke.toml",
            "seed": 7, "target": "embedded", "planned_s": 600.0,
            "grading": {"slo": {"call_success_min_pct": 99.0, "response_p95_max_s": 2.0,
                "response_p99_max_s": null, "first_audio_p95_max_s": null,
                "pacing_jitter_p99_max_s": null, "detect_within_s": 10.0,
                "no_retry_storm": false, "recover_within_s": 60.0, "stable_window_s": 10.0,
                "uptime_min_pct": null, "memory_growth_max_mib_h": null,
                "temp_dir_growth_max_mib_h": null, "max_crashes": 0,
                "no_unprovoked_alerts": true},
                "faults": [
                    {"name": format!("tts{evil}"), "kind": "tts_429",
                        "detect": [{"alert": format!("TtsRateLimited{evil}")}], "recover_from": "clear"},
                    {"name": "db", "kind": "db_pool_exhaustion",
                        "detect": [{"alert": "DbPoolSaturated"}], "recover_from": "clear"},
                    {"name": "leak", "kind": "temp_file_leak",
                        "detect": [{"alert": "TempDirGrowing"}], "recover_from": "clear"}]}}),
        json!({"event": "fleet", "t_s": 0.1, "pid": 4242}),
    ];
    for step in 1..=120u64 {
        let t = step as f64 * 5.0;
        let in_db_fault = (300.0..=340.0).contains(&t);
        let failed = u64::from(in_db_fault) * 3;
        let p50 = if in_db_fault {
            1_900.0
        } else {
            420.0 + (step % 7) as f64 * 10.0
        };
        let mut interval = json!({"event": "interval", "t_s": t, "from_s": t - 5.0,
            "started": 6, "completed": 6, "failed": failed, "active": 12 + step % 5,
            "replies": 12, "outcomes": {"completed": 6, "turn_timeout": failed},
            "response_ms": {"count": 12, "p50": p50, "p95": p50 * 1.6, "p99": p50 * 2.1,
                "max": p50 * 2.5}});
        if failed > 0 && step % 4 == 0 {
            interval["failure_examples"] = json!([{"outcome": "turn_timeout",
                "detail": format!("no reply within 8s{evil}")}]);
        }
        records.push(interval);
        records.push(json!({"event": "fleet_process", "t_s": t,
            "rss_bytes": 150e6 + t * 40e3}));
        let leaked = if (100.0..160.0).contains(&t) {
            (t - 100.0) * 350e3
        } else {
            0.0
        };
        records.push(json!({"event": "temp_dir", "t_s": t, "bytes": 2e6 + leaked}));
        let limited = if (200.0..=215.0).contains(&t) { 14 } else { 0 };
        records.push(json!({"event": "tts_requests", "t_s": t, "window_s": 5.0,
            "requests": 20 + limited, "during_fault": limited,
            "by_status": {"200": 20, "429": limited}}));
    }
    let fault = |event: &str, name: &str, kind: &str, t_s: f64| {
        json!({"event": event, "t_s": t_s, "fault": name, "kind": kind, "occurrence": 1,
            "planned_at_s": t_s, "evidence": format!("seen in effect{evil}"),
            "note": format!("undone{evil}")})
    };
    let tts = format!("tts{evil}");
    records.extend([
        fault("fault_injected", "leak", "temp_file_leak", 100.0),
        fault("fault_confirmed", "leak", "temp_file_leak", 101.0),
        json!({"event": "alert", "t_s": 118.0, "name": "TempDirGrowing", "status": "firing"}),
        fault("fault_cleared", "leak", "temp_file_leak", 110.0),
        json!({"event": "alert", "t_s": 160.0, "name": "TempDirGrowing", "status": "resolved"}),
        fault("fault_injected", &tts, "tts_429", 200.0),
        fault("fault_confirmed", &tts, "tts_429", 200.5),
        json!({"event": "alert", "t_s": 200.7, "name": format!("TtsRateLimited{evil}"), "status": "firing"}),
        fault("fault_cleared", &tts, "tts_429", 215.0),
        json!({"event": "alert", "t_s": 220.0, "name": format!("TtsRateLimited{evil}"), "status": "resolved"}),
        fault("fault_injected", "db", "db_pool_exhaustion", 300.0),
        fault("fault_confirmed", "db", "db_pool_exhaustion", 301.0),
        fault("fault_cleared", "db", "db_pool_exhaustion", 330.0),
        json!({"event": "fleet_exited", "t_s": 450.0, "status": format!("exit 1{evil}"), "by_harness": false}),
        json!({"event": "run_ended", "t_s": 600.0, "at": "2026-11-23T14:10:00.000Z", "stopped": null}),
    ]);
    let time = |record: &Value| record["t_s"].as_f64().unwrap();
    records.sort_by(|a, b| time(a).total_cmp(&time(b)));
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// `voxsoak report DIR`; report.html's path.
fn report(dir: &Path) -> PathBuf {
    let output = Command::new(voxsoak_exe())
        .args(["report", dir.to_str().unwrap()])
        .output()
        .expect("run voxsoak report");
    assert_eq!(
        output.status.code(),
        Some(voxsoak::exit::FAILED),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.join("report.html")
}

/// The way of telling "no console message" is sound: a page that logs an error, and the
/// report itself with an image its Content-Security-Policy refuses, are both caught.
fn the_console_check_catches_errors_and_refusals(browser: &Path, dir: &Path, html: &str) {
    let logging = "<!DOCTYPE html><html><head><title>control</title></head><body>\
                   <script>console.error('voxsoak control error')</script></body></html>";
    let image = "<img src=\"data:image/gif;base64,R0lGODlhAQABAAAAACw=\" alt=\"\"></body>";
    assert!(html.contains("</body>"), "{html}");
    let refusing = html.replacen("</body>", image, 1);
    for (name, page, expected) in [
        ("console", logging, "voxsoak control error"),
        ("csp", refusing.as_str(), "Content Security Policy"),
    ] {
        let path = dir.join(format!("control-{name}.html"));
        std::fs::write(&path, page).unwrap();
        let console = run_chromium(
            browser,
            &path,
            &dir.join(format!("profile-control-{name}")),
            &["--dump-dom".to_owned()],
        )
        .console;
        assert!(
            console.iter().any(|line| line.contains(expected)),
            "control {name}: {expected:?} not caught in {console:?}"
        );
    }
}

#[test]
fn chromium_draws_the_report_with_the_verdict_and_every_fault() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), "");
    let page = report(dir.path());
    let html = std::fs::read_to_string(&page).unwrap();
    for outside in [
        "http://", "https://", "src=", "<script", "<link", "@import", "url(",
    ] {
        assert!(
            !html.contains(outside),
            "{outside} in a self-contained page"
        );
    }
    let Some(browser) = chromium() else {
        return;
    };
    the_console_check_catches_errors_and_refusals(&browser, dir.path(), &html);
    let rendered = open_in_chromium(&browser, &page);
    assert_eq!(rendered.console, Vec::<String>::new(), "console messages");
    let dom = &rendered.dom;
    assert!(dom.contains("id=\"verdict\">FAIL</div>"), "{dom}");
    assert!(dom.contains("<title>voxsoak smoke: FAIL</title>"), "{dom}");
    for fault in [
        "leak #1 (temp_file_leak)",
        "tts #1 (tts_429)",
        "db #1 (db_pool_exhaustion)",
    ] {
        assert!(dom.contains(fault), "{fault} not in the page:\n{dom}");
    }
    assert!(dom.contains("injected 14:03:20 (200.0 s)"), "{dom}");
    assert!(
        dom.contains("detected after 0.7s (alert TtsRateLimited)"),
        "{dom}"
    );
    assert!(dom.contains("<svg class=\"timeline\""), "{dom}");
    assert_eq!(
        dom.matches("<polyline").count(),
        9,
        "active, success, p50/p95/p99, RSS, temp dir, TTS 200 and 429"
    );
}

#[test]
fn a_fleet_sending_script_gets_text_and_no_script_runs() {
    let evil = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">\"'\u{7}\u{1b}[2J\u{202e}";
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), evil);
    let page = report(dir.path());
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.to_lowercase().contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    let shown = r#"&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;&lt;img src=x onerror=&quot;document.title=&#39;pwned&#39;&quot;&gt;&quot;&#39;\x07\x1b[2J\u{202e}"#;
    assert!(html.contains(&format!("tts{shown} #1 (tts_429)")), "{html}");
    assert!(
        html.contains(&format!("no reply within 8s{shown}")),
        "{html}"
    );
    let Some(browser) = chromium() else {
        return;
    };
    // The way of telling is sound: the same script, unescaped, does retitle a page.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><head><title>before</title></head><body><script>document.title='pwned'</script></body></html>",
    )
    .unwrap();
    let ran = run_chromium(
        &browser,
        &control,
        &dir.path().join("profile-control"),
        &["--dump-dom".to_owned()],
    );
    assert!(ran.dom.contains("<title>pwned</title>"), "{}", ran.dom);

    let rendered = open_in_chromium(&browser, &page);
    assert_eq!(rendered.console, Vec::<String>::new(), "console messages");
    let dom = &rendered.dom;
    assert!(
        !dom.contains("<title>pwned</title>"),
        "a script ran:\n{dom}"
    );
    assert!(dom.contains("<title>voxsoak smoke&lt;script&gt;"), "{dom}");
    assert!(!dom.to_lowercase().contains("<script"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    assert!(dom.contains("id=\"verdict\">FAIL</div>"), "{dom}");
    // The DOM serializes text with `<`, `>` and `&` as entities, quotes as they are.
    let text = shown.replace("&#39;", "'").replace("&quot;", "\"");
    assert!(dom.contains(&format!("tts{text} #1 (tts_429)")), "{dom}");
}
