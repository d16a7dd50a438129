//! Scenario composition (`include = [...]`) with real files: how files merge, where
//! problems in an included file are reported, and what relative paths there mean.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tests::write_wav;
use super::*;

const STAGES: &str = "[load]\nstages = [{ ramp_to = 2, over = \"10s\" }]\n";

/// Writes `text` at `dir/name` (making its directory) and gives the path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

/// A temp dir with a fixture at shared/audio/hello.wav.
fn with_shared_audio() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("shared/audio")).unwrap();
    write_wav(
        &dir.path().join("shared/audio/hello.wav"),
        Duration::from_millis(500),
    );
    dir
}

fn loaded(path: &Path) -> Scenario {
    load(path).unwrap_or_else(|error| panic!("{error}"))
}

/// Every problem as `file:line:column: message`, as `voxsoak validate` prints it.
fn problems(path: &Path) -> Vec<String> {
    match load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(error @ ScenarioError::Invalid { .. }) => {
            error.to_string().lines().map(str::to_owned).collect()
        }
        Err(error) => panic!("unexpected {error:?}"),
    }
}

const FLEET: &str = r#"name = "fleet"
[target]
fleet = "embedded"
bugs = ["no-backoff"]
workers = 4
orders = 1000

[calls]
turn_timeout = "8s"
reply_silence = "1s"

[[scripts]]
name = "greeting"
turns = 1

[slo]
call_success = ">= 95%"

[[slo.metric]]
name = "dlq"
series = "dead_letters"
max = 10

[[faults]]
kind = "tts_429"
name = "shared-429"
at = "1s"
for = "2s"
"#;

#[test]
fn tables_merge_key_by_key_the_including_file_wins_and_entries_append() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = write(dir.path(), "fleet.toml", FLEET);
    let soak = write(
        dir.path(),
        "soak.toml",
        &format!(
            r#"include = ["fleet.toml"]
seed = 9
[target]
workers = 2
{STAGES}
[calls]
turn_timeout = "5s"

[[scripts]]
name = "menu"
steps = [{{ dtmf = "1" }}]

[slo]
response_p95 = "<= 2s"

[[slo.metric]]
name = "queue"
series = "queue_depth"
max = 5

[[faults]]
kind = "tts_slow"
at = "3s"
for = "2s"
delay = "1s"
"#
        ),
    );
    let scenario = loaded(&soak);
    // Scalars: the including file wins; what it leaves out comes from the fleet file.
    assert_eq!(scenario.name, "fleet");
    assert_eq!(scenario.seed, 9);
    let Target::Embedded(fleet_target) = &scenario.target else {
        panic!("{:?}", scenario.target);
    };
    assert_eq!(fleet_target.workers, 2);
    assert_eq!(fleet_target.orders, 1000);
    assert_eq!(
        fleet_target.bugs,
        vec![crate::contract::fleet::Bug::NoBackoff]
    );
    assert_eq!(scenario.calls.turn_timeout, Duration::from_secs(5));
    assert_eq!(scenario.calls.reply_silence, Duration::from_secs(1));
    assert_eq!(scenario.slo.call_success_min_pct, Some(95.0));
    assert_eq!(scenario.slo.response_p95_max, Some(Duration::from_secs(2)));
    // Arrays of entries: the included file's first, then the including file's.
    let names = |names: Vec<&str>| names.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        scenario
            .scripts
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>(),
        names(vec!["greeting", "menu"])
    );
    assert_eq!(
        scenario
            .slo
            .metrics
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>(),
        names(vec!["dlq", "queue"])
    );
    assert_eq!(
        scenario
            .faults
            .iter()
            .map(|f| f.name.clone())
            .collect::<Vec<_>>(),
        names(vec!["shared-429", "tts_slow"])
    );
    // Each fault knows the file and line it was written at.
    let positions: Vec<_> = scenario
        .faults
        .iter()
        .map(|fault| (fault.file.clone(), fault.line))
        .collect();
    assert_eq!(positions, vec![(Some(fleet.clone()), 24), (None, 23)]);
    assert_eq!(scenario.includes, vec![fleet]);
    assert_eq!(scenario.path, soak);
}

#[test]
fn a_later_include_wins_over_an_earlier_one_and_arrays_other_than_entries_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.toml",
        "[target]\nfleet = \"sink\"\nreply_delay = \"700ms\"\nallow_hosts = [\"127.0.0.1\", \"localhost\"]\n",
    );
    write(
        dir.path(),
        "b.toml",
        "[target]\nreply_delay = \"900ms\"\n[load]\nstages = [{ ramp_to = 5, over = \"5s\" }, { hold = \"5s\" }]\n",
    );
    let soak = write(
        dir.path(),
        "soak.toml",
        "include = [\"a.toml\", \"b.toml\"]\n[target]\nallow_hosts = [\"::1\"]\n[load]\nstages = [{ ramp_to = 1, over = \"2s\" }]\n",
    );
    let scenario = loaded(&soak);
    let Target::Sink(sink) = &scenario.target else {
        panic!("{:?}", scenario.target);
    };
    assert_eq!(sink.reply_delay, Duration::from_millis(900));
    assert_eq!(scenario.allow_hosts, vec!["::1".to_owned()]);
    assert_eq!(
        scenario.load,
        Load::Stages(vec![Stage {
            to: 1,
            duration: Duration::from_secs(2)
        }])
    );
}

#[test]
fn includes_nest_relative_to_the_file_that_names_them_and_each_file_is_merged_once() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "shared/base/fleet.toml",
        "[target]\nfleet = \"embedded\"\n[[faults]]\nkind = \"tts_429\"\nfor = \"2s\"\n",
    );
    // Both include the fleet file: a diamond, not a cycle, and its fault comes in once.
    let mid = write(
        dir.path(),
        "shared/mid.toml",
        &format!("include = [\"base/fleet.toml\"]\n{STAGES}"),
    );
    let slos = write(
        dir.path(),
        "shared/slos.toml",
        "include = [\"base/fleet.toml\"]\n[slo]\ncall_success = \">= 90%\"\n",
    );
    let soak = write(
        dir.path(),
        "soaks/nightly.toml",
        "include = [\"../shared/mid.toml\", \"../shared/slos.toml\"]\n",
    );
    let scenario = loaded(&soak);
    assert_eq!(scenario.faults.len(), 1, "{:?}", scenario.faults);
    assert_eq!(scenario.slo.call_success_min_pct, Some(90.0));
    let named = |path: &Path| path.canonicalize().unwrap();
    let includes: Vec<PathBuf> = scenario.includes.iter().map(|p| named(p)).collect();
    assert_eq!(includes, vec![named(&mid), named(&base), named(&slos)]);
    assert_eq!(
        scenario.faults[0].file.as_deref().map(named),
        Some(named(&base))
    );
}

#[test]
fn a_cycle_is_an_error_naming_the_chain_at_the_entry_that_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.toml",
        &format!("include = [\"b.toml\"]\n{STAGES}"),
    );
    write(
        dir.path(),
        "b.toml",
        "[target]\nfleet = \"sink\"\ninclude = 1\n",
    );
    // A key `include` inside a table is an ordinary unknown key; only the top level's counts.
    let found = problems(&a);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("b.toml:3:1: unknown field `include`"),
        "{found:#?}"
    );

    write(dir.path(), "b.toml", "include = [\"c.toml\"]\n");
    write(
        dir.path(),
        "c.toml",
        "# the loop\ninclude = [ \"a.toml\" ]\n",
    );
    let found = problems(&a);
    let c = dir.path().join("c.toml");
    assert_eq!(
        found,
        vec![format!(
            "{}:2:13: include cycle: {} includes {} includes {} includes {}",
            c.display(),
            a.display(),
            dir.path().join("b.toml").display(),
            c.display(),
            dir.path().join("a.toml").display()
        )]
    );
    // Including itself is the shortest cycle.
    let itself = write(dir.path(), "self.toml", "include = [\"self.toml\"]\n");
    let found = problems(&itself);
    assert!(
        found[0].contains("self.toml:1:12: include cycle"),
        "{found:#?}"
    );
}

#[test]
fn a_missing_include_is_reported_at_its_entry_in_the_including_file() {
    let dir = tempfile::tempdir().unwrap();
    let soak = write(
        dir.path(),
        "soak.toml",
        "name = \"x\"\ninclude = [\n  \"fleet.toml\",\n  \"gone.toml\",\n  \".\",\n  \"\",\n  3,\n]\n",
    );
    write(dir.path(), "fleet.toml", "[target]\nfleet = \"sink\"\n");
    let found = problems(&soak);
    let shown = soak.display().to_string();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0],
        format!("{shown}:7:3: include entries are file paths (strings), found an integer")
    );
    fs::write(
        &soak,
        "name = \"x\"\ninclude = [\n  \"fleet.toml\",\n  \"gone.toml\",\n  \".\",\n  \"\",\n]\n",
    )
    .unwrap();
    let found = problems(&soak);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(
        found[0],
        format!(
            "{shown}:4:3: cannot include \"gone.toml\": {} does not exist",
            dir.path().join("gone.toml").display()
        )
    );
    assert!(
        found[1].starts_with(&format!("{shown}:5:3: cannot include \".\"")),
        "{found:#?}"
    );
    assert!(found[1].ends_with("is a directory"), "{found:#?}");
    assert_eq!(
        found[2],
        format!("{shown}:6:3: include entry must not be empty")
    );
    fs::write(&soak, "include = \"fleet.toml\"\n").unwrap();
    let found = problems(&soak);
    assert_eq!(
        found,
        vec![format!(
            "{shown}:1:11: include is a list of files, e.g. include = [\"fleet.toml\"]; found a string"
        )]
    );
}

#[test]
fn problems_in_an_included_file_are_reported_at_its_own_lines() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = write(
        dir.path(),
        "shared/fleet.toml",
        "# the fleet\n[target]\nfleet = \"embedded\"\ncolour = \"red\"\nworkers = \"four\"\n",
    );
    let soak = write(
        dir.path(),
        "soak.toml",
        &format!("include = [\"shared/fleet.toml\"]\n{STAGES}speed = 3\n"),
    );
    let (shown, fleet_shown) = (soak.display(), fleet.display());
    // Phase 1: unknown keys and wrong types, in both files, each in its own.
    let found = problems(&soak);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{shown}:4:1: unknown field `speed`")),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with(&format!("{fleet_shown}:4:1: unknown field `colour`")),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with(&format!("{fleet_shown}:5:11: invalid type")),
        "{found:#?}"
    );
    // Phase 2: a bad value; and syntax errors.
    fs::write(
        &fleet,
        "[target]\nfleet = \"embedded\"\nstall_after = \"-5s\"\n",
    )
    .unwrap();
    fs::write(
        &soak,
        format!("include = [\"shared/fleet.toml\"]\n{STAGES}"),
    )
    .unwrap();
    let found = problems(&soak);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{fleet_shown}:3:15: expected a duration")),
        "{found:#?}"
    );
    fs::write(&fleet, "[target]\nfleet = = \"embedded\"\n").unwrap();
    let found = problems(&soak);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{fleet_shown}:2:")),
        "{found:#?}"
    );
    // Bytes that are not UTF-8.
    fs::write(&fleet, b"[target]\nfleet = \"sink\xE9\"\n").unwrap();
    let found = problems(&soak);
    assert_eq!(
        found,
        vec![format!(
            "{fleet_shown}:2:14: invalid UTF-8 (byte 0xE9): a scenario file must be UTF-8 text"
        )]
    );
}

#[test]
fn a_secret_pasted_into_an_included_file_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "0123456789abcdef0123456789abcdef";
    write(
        dir.path(),
        "fleet.toml",
        &format!("[target]\nstream_url = \"ws://127.0.0.1/s\"\nauth_token_env = \"{secret}\"\n"),
    );
    let soak = write(
        dir.path(),
        "soak.toml",
        &format!("include = [\"fleet.toml\"]\n{STAGES}"),
    );
    let found = problems(&soak).join("\n");
    assert!(found.contains("fleet.toml:3:18:"), "{found}");
    assert!(!found.contains(secret), "{found}");
}

#[test]
fn relative_fixture_paths_are_relative_to_the_file_that_names_them() {
    let dir = with_shared_audio();
    write(
        dir.path(),
        "shared/fleet.toml",
        "[target]\nfleet = \"sink\"\n[calls]\nfixtures = [\"audio/*.wav\"]\n",
    );
    let soak = write(
        dir.path(),
        "soaks/soak.toml",
        &format!("include = [\"../shared/fleet.toml\"]\n{STAGES}"),
    );
    let scenario = loaded(&soak);
    let paths: Vec<PathBuf> = scenario
        .calls
        .fixtures
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(
        paths,
        vec![
            dir.path()
                .join("shared/audio/hello.wav")
                .canonicalize()
                .unwrap()
        ]
    );
    // The same entry in the soak file itself is relative to the soak's directory, where
    // there is no audio/.
    fs::write(
        &soak,
        format!(
            "include = [\"../shared/fleet.toml\"]\n{STAGES}[calls]\nfixtures = [\"audio/*.wav\"]\n"
        ),
    )
    .unwrap();
    let found = problems(&soak);
    assert!(
        found[0].contains("soak.toml:5:13: fixture glob \"audio/*.wav\" matches no files"),
        "{found:#?}"
    );
}

#[test]
fn includes_nest_at_most_so_deep() {
    let dir = tempfile::tempdir().unwrap();
    for level in 0..=MAX_INCLUDE_DEPTH + 1 {
        write(
            dir.path(),
            &format!("{level}.toml"),
            &format!("include = [\"{}.toml\"]\n", level + 1),
        );
    }
    write(
        dir.path(),
        &format!("{}.toml", MAX_INCLUDE_DEPTH + 2),
        &format!("[target]\nfleet = \"sink\"\n{STAGES}"),
    );
    // Depth 8 (the most) from file 2: 3.toml to 10.toml.
    let ok = dir.path().join("2.toml");
    assert_eq!(loaded(&ok).includes.len(), MAX_INCLUDE_DEPTH);
    let found = problems(&dir.path().join("0.toml"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("8.toml:1:12: cannot include \"9.toml\": includes nest more than 8 deep"),
        "{found:#?}"
    );
}

#[test]
fn a_warning_about_an_included_fault_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = write(
        dir.path(),
        "fleet.toml",
        "[target]\nfleet = \"embedded\"\n\n[[faults]]\nkind = \"tts_429\"\nat = \"1h\"\nfor = \"2s\"\n",
    );
    let soak = write(
        dir.path(),
        "soak.toml",
        &format!("include = [\"fleet.toml\"]\n{STAGES}"),
    );
    let scenario = loaded(&soak);
    let warnings: Vec<String> = scenario.warnings(Duration::from_secs(10)).lines().collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].starts_with(&format!(
            "{}:4:1: warning: fault \"tts_429\" is never injected",
            fleet.display()
        )),
        "{warnings:#?}"
    );
}

#[test]
fn the_composed_scenario_is_one_file_that_validates_as_the_same_scenario() {
    let dir = with_shared_audio();
    write(
        dir.path(),
        "shared/fleet.toml",
        &FLEET.replace("[calls]\n", "[calls]\nfixtures = [\"audio/*.wav\"]\n"),
    );
    let soak = write(
        dir.path(),
        "soaks/soak.toml",
        &format!(
            "include = [\"../shared/fleet.toml\"]\nseed = 3\n{STAGES}\n[[faults]]\nkind = \"tts_slow\"\nat = \"3s\"\nfor = \"2s\"\ndelay = \"1s\"\n"
        ),
    );
    let scenario = loaded(&soak).with_seed(11).with_time_scale(2.0);
    let text = scenario.composed_toml().expect("a composed scenario");
    assert!(
        text.starts_with("# The scenario as run, composed of:\n"),
        "{text}"
    );
    assert!(!text.contains("include"), "{text}");
    // Elsewhere, away from the fleet file and its audio.
    let copy = write(&dir.path().join("run"), "scenario.toml", &text);
    let again = loaded(&copy);
    assert_eq!(again.name, scenario.name);
    assert_eq!(again.seed, 11);
    assert_eq!(again.time_scale, 2.0);
    assert_eq!(again.target, scenario.target);
    assert_eq!(again.load, scenario.load);
    assert_eq!(again.calls, scenario.calls);
    assert_eq!(again.scripts, scenario.scripts);
    assert_eq!(again.slo, scenario.slo);
    let specs = |scenario: &Scenario| -> Vec<_> {
        scenario
            .faults
            .iter()
            .map(|fault| {
                (
                    fault.name.clone(),
                    fault.fault.clone(),
                    fault.at,
                    fault.duration,
                )
            })
            .collect()
    };
    assert_eq!(specs(&again), specs(&scenario));
    assert!(again.includes.is_empty() && again.composed_toml().is_none());
    // A scenario in one file has no composed copy: the file is the record.
    let single = write(
        dir.path(),
        "single.toml",
        &format!("[target]\nfleet = \"sink\"\n{STAGES}"),
    );
    assert!(loaded(&single).composed_toml().is_none());
}

#[test]
fn the_composed_scenario_masks_secrets_as_the_journal_does() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "fleet.toml",
        "[target]\nstream_url = \"ws://user:hunter2@127.0.0.1/s?sig=abc123\"\ncustom_parameters = { token = \"xyz789\", tenant = \"acme\" }\n",
    );
    let soak = write(
        dir.path(),
        "soak.toml",
        &format!("include = [\"fleet.toml\"]\n{STAGES}"),
    );
    let text = loaded(&soak).composed_toml().unwrap();
    for secret in ["hunter2", "abc123", "xyz789"] {
        assert!(!text.contains(secret), "{secret} in:\n{text}");
    }
    assert!(text.contains("acme"), "{text}");
}

#[test]
fn the_plan_names_the_included_files() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = write(dir.path(), "fleet.toml", "[target]\nfleet = \"sink\"\n");
    let soak = write(
        dir.path(),
        "soak.toml",
        &format!("include = [\"fleet.toml\"]\n{STAGES}"),
    );
    let plan = crate::plan::render_plan(&loaded(&soak));
    let row = plan
        .lines()
        .find(|line| line.trim_start().starts_with("includes"))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(row.ends_with(&fleet.display().to_string()), "{row}");
}
