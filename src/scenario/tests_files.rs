//! What validation reads besides the TOML: the file's bytes, its fixtures and the paths it
//! names; and that it reports every problem at once, and warns of faults a run would
//! never inject.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::tests::{diagnostics, parse_ok, write_wav};
use super::*;

const SINK: &str = "[target]\nfleet = \"sink\"\n";
const STAGES: &str = "[load]\nstages = [{ ramp_to = 2, over = \"10s\" }]\n";

fn invalid(error: ScenarioError) -> Vec<Diagnostic> {
    match error {
        ScenarioError::Invalid { diagnostics, .. } => diagnostics,
        other => panic!("expected diagnostics, got {other:?}"),
    }
}

// ---- every problem at once ----------------------------------------------------------------

#[test]
fn every_unknown_key_is_reported_with_the_other_problems() {
    let source = "colour = \"red\"\n\
                  [target]\nfleet = \"sink\"\nspeed = 3\n\
                  [load]\nstages = [{ ramp_to = 2, over = \"1s\", jitter = 1 }]\n\
                  [calls]\nturn_timeout = \"-1s\"\n";
    let found = diagnostics(source);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].starts_with("1:1: unknown field `colour`, expected one of `name`"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("4:1: unknown field `speed`, expected one of `fleet`"),
        "{found:#?}"
    );
    assert_eq!(
        found[2],
        "6:39: unknown field `jitter`, expected one of `ramp_to`, `over`, `hold`, `diurnal`, `base`, `peak`, `trough`, `spike_to`, `for`"
    );
    // Phase 2 still ran: the bad duration is reported in the same pass.
    assert!(
        found[3].starts_with("8:16: expected a duration"),
        "{found:#?}"
    );
}

#[test]
fn every_value_of_the_wrong_type_is_reported() {
    let source = "seed = \"x\"\n[target]\nfleet = 5\n\
                  [load]\nstages = [{ ramp_to = \"2\", over = \"1s\" }]\n\
                  [[scripts]]\nname = \"a\"\nweight = \"heavy\"\nmood = 1\n";
    let found = diagnostics(source);
    assert_eq!(
        found,
        [
            r#"1:8: invalid type: string "x", expected u64"#,
            "3:9: invalid type: integer `5`, expected a string",
            r#"5:23: invalid type: string "2", expected i64"#,
            r#"8:10: invalid type: string "heavy", expected i64"#,
            "9:1: unknown field `mood`, expected one of `name`, `weight`, `turns`, `steps`",
        ]
    );
}

#[test]
fn syntax_errors_on_several_lines_are_all_reported() {
    let source =
        "[target]\nfleet = sink\n[load]\nstages = [{ ramp_to = 2, over = \"1s\" }]\nseed = = 3\n";
    let found = diagnostics(source);
    let lines: Vec<&str> = found
        .iter()
        .map(|found| found.split(':').next().unwrap())
        .collect();
    assert_eq!(lines, ["2", "5"], "one error per broken line: {found:#?}");
    assert!(found[0].starts_with("2:9: string values must be quoted"));
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    let mut bytes = format!("{SINK}{STAGES}").into_bytes();
    bytes.extend_from_slice(b"# caf\xe9 au lait, \xff\xfe\n");
    fs::write(&path, &bytes).unwrap();
    let found = invalid(load(&path).unwrap_err());
    let positions: Vec<(usize, usize)> = found.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(positions, [(5, 6), (5, 17), (5, 18)], "{found:#?}");
    assert!(found[0].message.contains("0xE9"), "{}", found[0].message);
    let error = load(&path).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}:5:6: invalid UTF-8", path.display())),
        "{error}"
    );
}

#[test]
fn a_binary_file_gets_ten_positions_and_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary.toml");
    fs::write(&path, [0xffu8, b'a'].repeat(25)).unwrap();
    let found = invalid(load(&path).unwrap_err());
    assert_eq!(found.len(), 10);
    assert!(
        found[9]
            .message
            .ends_with("(15 more invalid sequences after this one)"),
        "{}",
        found[9].message
    );
}

// ---- fixtures ---------------------------------------------------------------------------

/// `scenario.toml` next to `fixtures/`, with `entries` (one a line) as `[calls] fixtures`.
fn with_fixtures(dir: &Path, entries: &[&str]) -> Result<Scenario, ScenarioError> {
    let list: Vec<String> = entries
        .iter()
        .map(|entry| format!("  {entry:?},"))
        .collect();
    let source = format!(
        "{SINK}{STAGES}[calls]\nfixtures = [\n{}\n]\n",
        list.join("\n")
    );
    let path = dir.join("scenario.toml");
    fs::write(&path, source).unwrap();
    load(&path)
}

/// A WAV header for 8 kHz mono 16-bit whose data chunk claims `data_bytes`, with no data.
fn wav_header(data_bytes: u32) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&data_bytes.saturating_add(36).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&8000u32.to_le_bytes());
    header.extend_from_slice(&16_000u32.to_le_bytes()); // bytes a second
    header.extend_from_slice(&2u16.to_le_bytes()); // block align
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_bytes.to_le_bytes());
    header
}

#[test]
fn fixtures_are_decoded_at_validation() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures");
    fs::create_dir(&fixtures).unwrap();
    write_wav(&fixtures.join("hello.wav"), Duration::from_millis(500));
    let scenario = with_fixtures(dir.path(), &["fixtures/hello.wav"]).unwrap();
    let fixture = &scenario.calls.fixtures[0];
    assert_eq!(fixture.samples.len(), 4000);
    assert_eq!(fixture.duration(), Duration::from_millis(500));
    assert_eq!(fixture.stem(), "hello");
    // The audio is the scenario's: the file can go, a run still has it.
    fs::remove_file(&fixture.path).unwrap();
    assert_eq!(scenario.calls.fixtures[0].samples.len(), 4000);
}

#[test]
fn every_bad_fixture_is_reported_at_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures");
    fs::create_dir_all(fixtures.join("greetings")).unwrap();
    fs::write(fixtures.join("notes.wav"), "a shopping list, not audio").unwrap();
    // 200 MB on disk without writing them: the size is refused before the file is read.
    let huge = fs::File::create(fixtures.join("huge.wav")).unwrap();
    huge.set_len(200_000_000).unwrap();
    drop(huge);
    // A header claiming 4 GiB of samples in a 44-byte file.
    fs::write(fixtures.join("claims.wav"), wav_header(u32::MAX - 65)).unwrap();
    // 40 MiB claimed at 16 kB/s: 43 minutes, over the duration limit though under the size.
    fs::write(fixtures.join("long.wav"), wav_header(40 << 20)).unwrap();
    let found = invalid(
        with_fixtures(
            dir.path(),
            &[
                "fixtures/notes.wav",
                "fixtures/greetings",
                "fixtures/huge.wav",
                "fixtures/claims.wav",
                "fixtures/long.wav",
                "fixtures/none/*.wav",
            ],
        )
        .unwrap_err(),
    );
    let shown: Vec<String> = found
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect();
    assert_eq!(found.len(), 6, "{shown:#?}");
    let root = fixtures.canonicalize().unwrap();
    // One entry a line, from line 7, each error at its entry's opening quote.
    let file = |name: &str| root.join(name).display().to_string();
    let expected = [
        format!("fixture {} is not a WAV file", file("notes.wav")),
        format!(
            "fixture {} is a directory, not a WAV file",
            file("greetings")
        ),
        format!(
            "fixture {} is 190.7 MiB, over the limit of 50.0 MiB for a fixture",
            file("huge.wav")
        ),
        format!(
            "fixture {} claims 4.0 GiB, over the limit of 50.0 MiB for a fixture",
            file("claims.wav")
        ),
        format!(
            "fixture {} holds 43m 41s of audio, over the limit of 60.0 s for a fixture",
            file("long.wav")
        ),
        r#"fixture glob "fixtures/none/*.wav" matches no files"#.to_owned(),
    ];
    for (index, (message, found)) in expected.iter().zip(&shown).enumerate() {
        let line = 7 + index;
        assert!(
            found.starts_with(&format!("{line}:3: {message}")),
            "expected {line}:3: {message}\n   found {found}"
        );
    }
}

#[test]
fn fixtures_over_the_total_are_refused_at_the_entry_that_crosses_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures");
    fs::create_dir(&fixtures).unwrap();
    // Eleven minute-long files: 11 minutes against the 10-minute total.
    let silence = vec![0i16; 8000 * 60];
    for index in 0..11 {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer =
            hound::WavWriter::create(fixtures.join(format!("minute-{index:02}.wav")), spec)
                .unwrap();
        let mut samples = writer.get_i16_writer(silence.len() as u32);
        for &sample in &silence {
            samples.write_sample(sample);
        }
        samples.flush().unwrap();
        writer.finalize().unwrap();
    }
    let found = invalid(with_fixtures(dir.path(), &["fixtures/*.wav"]).unwrap_err());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].line, found[0].column), (7, 3));
    assert!(
        found[0]
            .message
            .starts_with("fixtures add up to more than 10m of audio (with "),
        "{}",
        found[0].message
    );
    assert!(
        found[0].message.contains("minute-10.wav"),
        "{}",
        found[0].message
    );
}

// ---- paths of the wrong kind ----------------------------------------------------------------

#[test]
fn a_path_of_the_wrong_kind_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let directory = dir.path().display().to_string();
    let source = format!(
        "[target]\nstream_url = \"ws://127.0.0.1:9/stream\"\n{STAGES}\
         [observe]\nlog_file = {directory:?}\ntemp_dir = {:?}\nprocess = {{ pid_file = {directory:?} }}\n\
         [[faults]]\nkind = \"tts_429\"\nfor = \"1s\"\ndetect = {{ log = \"x\", file = {directory:?} }}\n\
         [chaos]\ntts_listen = \"127.0.0.1:9100\"\n",
        file.display().to_string()
    );
    let found = diagnostics(&source);
    let expected = [
        format!("6:12: log_file {directory:?} is a directory; expected a file"),
        format!(
            "7:12: temp_dir {:?} is not a directory",
            file.display().to_string()
        ),
        format!("8:24: pid_file {directory:?} is a directory; expected a file"),
        format!("12:10: detect file {directory:?} is a directory; expected a file"),
    ];
    assert_eq!(found, expected);
    // Paths that do not exist yet are fine: the fleet creates them when it starts.
    let later = dir.path().join("later");
    let source = format!(
        "[target]\nstream_url = \"ws://127.0.0.1:9/stream\"\n{STAGES}\
         [observe]\nlog_file = {:?}\n",
        later.join("fleet.log").display().to_string()
    );
    parse_ok(&source);
}

// ---- warnings ---------------------------------------------------------------------------

const EMBEDDED_10S: &str =
    "[target]\nfleet = \"embedded\"\n[load]\nstages = [{ ramp_to = 2, over = \"10s\" }]\n";

#[test]
fn a_fault_never_injected_is_a_warning_at_its_entry() {
    let source = format!(
        "{EMBEDDED_10S}[[faults]]\nkind = \"tts_429\"\nat = \"10h\"\nfor = \"30s\"\n\
         [[faults]]\nkind = \"tts_error\"\nat = \"8s\"\nfor = \"30s\"\n"
    );
    let scenario = parse_ok(&source);
    let warnings = scenario.warnings(scenario.load.duration());
    let shown: Vec<String> = warnings.lines().collect();
    assert_eq!(
        shown,
        [
            r#"/nowhere/test.toml:5:1: warning: fault "tts_429" is never injected in a run of 10s: it starts at 10h, after the run ends"#,
            r#"/nowhere/test.toml:9:1: warning: fault "tts_error" is never injected in a run of 10s: it starts at 8s, 2s before the run ends; an injection needs 15s left to be confirmed in effect"#,
        ]
    );
    // A longer run (`--duration`) injects the second one.
    let longer = scenario.warnings(Duration::from_secs(60));
    assert_eq!(longer.diagnostics.len(), 1);
    assert_eq!(longer.diagnostics[0].line, 5);
    // A fault that is injected warns of nothing.
    let fine = parse_ok(&format!(
        "{EMBEDDED_10S}[[faults]]\nkind = \"tts_429\"\nat = \"1s\"\nfor = \"5s\"\n"
    ));
    assert!(fine.warnings(fine.load.duration()).diagnostics.is_empty());
}
