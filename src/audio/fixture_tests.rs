//! Every committed WAV fixture loads, converts to 8 kHz, and is mostly speech, so a
//! scenario naming any of them works and a regenerated file that went wrong fails here.

use std::path::{Path, PathBuf};

use super::utterance::Utterance;
use super::vad::VoiceActivity;
use super::wav::load_wav;
use super::{FRAME_SAMPLES, SAMPLE_RATE};

fn fixtures() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "wav"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_fixture_is_speech_at_8_khz() {
    let paths = fixtures();
    assert!(
        paths.len() >= 4,
        "expected at least four fixtures, found {paths:?}"
    );
    let vad = VoiceActivity::default();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let original = hound::WavReader::open(&path).unwrap();
        let spec = original.spec();
        let seconds = original.duration() as f64 / f64::from(spec.sample_rate);
        assert_ne!(
            spec.sample_rate, SAMPLE_RATE,
            "{name}: fixtures should exercise the resampler"
        );

        let samples = load_wav(&path).unwrap();
        assert!(!samples.is_empty(), "{name}: empty");
        let expected = seconds * f64::from(SAMPLE_RATE);
        assert!(
            (samples.len() as f64 - expected).abs() <= 1.0,
            "{name}: {} samples at 8 kHz, expected {expected:.0}",
            samples.len()
        );

        let utterance = Utterance::from_wav(&path, &vad).unwrap();
        assert_eq!(
            utterance.frame_count(),
            samples.len().div_ceil(FRAME_SAMPLES)
        );
        let (first, end) = utterance
            .voiced_frames()
            .unwrap_or_else(|| panic!("{name}: no speech found"));
        let frames = utterance.frame_count();
        assert!(
            (end - first) * 10 >= frames * 8,
            "{name}: speech covers frames {first}..{end} of {frames}"
        );
        // Trimmed: at most about 100 ms of silence at either end.
        assert!(
            first <= 5 && frames - end <= 5,
            "{name}: {first}..{end} of {frames}"
        );
    }
}
