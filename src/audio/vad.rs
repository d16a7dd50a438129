//! Energy-based voice-activity detection on 20 ms frames.
//!
//! The harness listens to a fleet that speaks synthetic or recorded voices over a clean
//! digital path, so frame energy separates speech from silence reliably; a spectral or
//! model-based VAD would cost more per frame for no gain. The mu-law path reads energy
//! straight from the wire bytes through a table, so listening to thousands of calls decodes
//! and allocates nothing.

use std::sync::LazyLock;
use std::time::Duration;

use super::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::twilio::mulaw;

/// What [`frame_dbfs`] reports for a frame with no energy at all, instead of -inf, so
/// levels stay printable and comparable.
pub const SILENCE_FLOOR_DBFS: f32 = -120.0;

/// Full scale for dBFS: a square wave at ±32768 is 0 dBFS, a full-scale sine -3 dBFS.
const FULL_SCALE: f64 = 32768.0;

/// The square of every mu-law code's decoded value: energy without decoding into a buffer.
/// The largest square (32124²) fits in a `u32`, and 160 of them sum safely in a `u64`.
static SQUARED_MULAW: LazyLock<[u32; 256]> = LazyLock::new(|| {
    let mut table = [0u32; 256];
    for (code, square) in (0..=255u8).zip(table.iter_mut()) {
        let value = i32::from(mulaw::decode(code));
        *square = (value * value) as u32;
    }
    table
});

/// Decides whether a frame holds speech by comparing its RMS level with a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoiceActivity {
    /// Frames at or above this RMS level (dBFS, see [`frame_dbfs`]) count as voiced.
    pub threshold_dbfs: f32,
}

impl Default for VoiceActivity {
    /// -40 dBFS: conversational speech from a TTS engine or a telephone sits around -30 to
    /// -15 dBFS RMS, while digital silence is -inf and line or comfort noise is typically
    /// -60 dBFS or below. -40 keeps 10 dB of margin under quiet speech and 20 dB over
    /// noise; mu-law's own quantisation of near-silence stays far below it.
    fn default() -> Self {
        Self {
            threshold_dbfs: -40.0,
        }
    }
}

impl VoiceActivity {
    /// Whether a frame of 16-bit PCM is voiced. An empty frame is not.
    pub fn is_voiced_pcm(&self, samples: &[i16]) -> bool {
        let sum_of_squares: u64 = samples
            .iter()
            .map(|&sample| {
                let value = i64::from(sample);
                (value * value) as u64
            })
            .sum();
        EnergyGate::new(*self).is_voiced(sum_of_squares, samples.len())
    }

    /// Whether a frame of mu-law bytes, as carried on the wire, is voiced. Does not allocate
    /// or decode; an empty frame is not voiced.
    pub fn is_voiced_mulaw(&self, frame: &[u8]) -> bool {
        EnergyGate::new(*self).is_voiced_mulaw(frame)
    }
}

/// The threshold of a [`VoiceActivity`] turned into a mean square, so that deciding a frame
/// costs one multiplication and one comparison instead of a square root and a logarithm.
#[derive(Debug, Clone, Copy)]
struct EnergyGate {
    mean_square_threshold: f64,
}

impl EnergyGate {
    fn new(vad: VoiceActivity) -> Self {
        let amplitude = FULL_SCALE * 10f64.powf(f64::from(vad.threshold_dbfs) / 20.0);
        Self {
            mean_square_threshold: amplitude * amplitude,
        }
    }

    fn is_voiced(&self, sum_of_squares: u64, samples: usize) -> bool {
        samples > 0 && sum_of_squares as f64 >= self.mean_square_threshold * samples as f64
    }

    fn is_voiced_mulaw(&self, frame: &[u8]) -> bool {
        let table = &*SQUARED_MULAW;
        let sum_of_squares: u64 = frame
            .iter()
            .map(|&code| u64::from(table[usize::from(code)]))
            .sum();
        self.is_voiced(sum_of_squares, frame.len())
    }
}

/// The RMS level of a frame in dBFS; [`SILENCE_FLOOR_DBFS`] for silence or an empty frame.
pub fn frame_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return SILENCE_FLOOR_DBFS;
    }
    let sum_of_squares: f64 = samples
        .iter()
        .map(|&sample| f64::from(sample) * f64::from(sample))
        .sum();
    let rms = (sum_of_squares / samples.len() as f64).sqrt();
    if rms == 0.0 {
        return SILENCE_FLOOR_DBFS;
    }
    ((20.0 * (rms / FULL_SCALE).log10()) as f32).max(SILENCE_FLOOR_DBFS)
}

/// The frames, of [`FRAME_SAMPLES`] each (the last may be shorter), where speech starts and
/// stops: `(first voiced frame, one past the last voiced frame)`, or `None` if no frame is
/// voiced. Used to know how much of a fixture is lead-in and tail silence.
pub fn voiced_span(samples: &[i16], vad: &VoiceActivity) -> Option<(usize, usize)> {
    let voiced = |frame: &[i16]| vad.is_voiced_pcm(frame);
    let first = samples.chunks(FRAME_SAMPLES).position(voiced)?;
    // Searching from the end reads only the trailing silence, not the whole utterance again.
    let last = samples.chunks(FRAME_SAMPLES).rposition(voiced)?;
    Some((first, last + 1))
}

/// A change in whether the other side of the call is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechEvent {
    /// Enough speech has been heard to count as the start of an utterance. It began
    /// `min_speech` (plus at most one tolerated silent frame) before this frame ended.
    Started,
    /// The hangover of silence has passed after speech. The last voiced frame was
    /// `trailing_silence_frames` frames before the end of this one, so speech really ended
    /// `trailing_silence_frames × 20 ms` ago.
    Ended { trailing_silence_frames: u32 },
}

/// Turns a stream of mu-law frames into speech start and end events, the way a voice agent
/// (or the harness, listening to one) decides a turn has begun or finished.
///
/// Starting needs `min_speech` of voiced audio, so a click or a breath does not count as
/// barge-in; one silent frame inside that run is forgiven, since a plosive or a dip between
/// syllables can fall under the threshold. Ending needs `hangover` of continuous silence,
/// so the pauses between words do not end the utterance. Durations are measured in samples
/// of the frames pushed, so frames of any length work; 160-byte frames are 20 ms each.
#[derive(Debug, Clone)]
pub struct SpeechSegmenter {
    gate: EnergyGate,
    /// Voiced samples needed before [`SpeechEvent::Started`].
    min_speech_samples: u64,
    /// Consecutive silent samples after speech before [`SpeechEvent::Ended`].
    hangover_samples: u64,
    speaking: bool,
    /// While not speaking: voiced samples in the run that may become speech.
    candidate_samples: u64,
    /// While not speaking: whether the candidate run has used up its one silent frame.
    candidate_gap_used: bool,
    /// While speaking: silence since the last voiced frame.
    silent_samples: u64,
    silent_frames: u32,
}

impl SpeechSegmenter {
    /// A segmenter that starts silent. Zero durations are treated as one sample, so a single
    /// voiced frame starts speech and a single silent frame ends it.
    pub fn new(vad: VoiceActivity, min_speech: Duration, hangover: Duration) -> Self {
        Self {
            gate: EnergyGate::new(vad),
            min_speech_samples: duration_to_samples(min_speech),
            hangover_samples: duration_to_samples(hangover),
            speaking: false,
            candidate_samples: 0,
            candidate_gap_used: false,
            silent_samples: 0,
            silent_frames: 0,
        }
    }

    /// Feeds the next frame of mu-law audio; returns an event when speech starts or ends.
    /// Does not allocate. An empty frame carries no time and is ignored.
    pub fn push_frame(&mut self, mulaw_frame: &[u8]) -> Option<SpeechEvent> {
        if mulaw_frame.is_empty() {
            return None;
        }
        let length = mulaw_frame.len() as u64;
        let voiced = self.gate.is_voiced_mulaw(mulaw_frame);
        if self.speaking {
            self.push_while_speaking(voiced, length)
        } else {
            self.push_while_silent(voiced, length)
        }
    }

    /// Whether speech has started and not yet ended.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Forgets all history, as at construction; for reusing a segmenter across calls.
    pub fn reset(&mut self) {
        self.speaking = false;
        self.clear_counters();
    }

    fn push_while_silent(&mut self, voiced: bool, length: u64) -> Option<SpeechEvent> {
        if voiced {
            self.candidate_samples += length;
            if self.candidate_samples >= self.min_speech_samples {
                self.speaking = true;
                self.clear_counters();
                return Some(SpeechEvent::Started);
            }
        } else if self.candidate_samples > 0 && !self.candidate_gap_used {
            self.candidate_gap_used = true;
        } else {
            self.candidate_samples = 0;
            self.candidate_gap_used = false;
        }
        None
    }

    fn push_while_speaking(&mut self, voiced: bool, length: u64) -> Option<SpeechEvent> {
        if voiced {
            self.silent_samples = 0;
            self.silent_frames = 0;
            return None;
        }
        self.silent_samples += length;
        self.silent_frames = self.silent_frames.saturating_add(1);
        if self.silent_samples < self.hangover_samples {
            return None;
        }
        let trailing_silence_frames = self.silent_frames;
        self.speaking = false;
        self.clear_counters();
        Some(SpeechEvent::Ended {
            trailing_silence_frames,
        })
    }

    fn clear_counters(&mut self) {
        self.candidate_samples = 0;
        self.candidate_gap_used = false;
        self.silent_samples = 0;
        self.silent_frames = 0;
    }
}

fn duration_to_samples(duration: Duration) -> u64 {
    let samples = duration.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn tone(dbfs: f64, samples: usize) -> Vec<i16> {
        // A sine's RMS is its peak over √2.
        let peak = FULL_SCALE * 10f64.powf(dbfs / 20.0) * std::f64::consts::SQRT_2;
        (0..samples)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * 440.0 * n as f64 / 8000.0;
                (peak * phase.sin()).round() as i16
            })
            .collect()
    }

    fn noise(dbfs: f64, samples: usize) -> Vec<i16> {
        // Uniform noise in ±a has RMS a/√3.
        let amplitude = FULL_SCALE * 10f64.powf(dbfs / 20.0) * 3f64.sqrt();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        (0..samples)
            .map(|_| rng.random_range(-amplitude..amplitude).round() as i16)
            .collect()
    }

    fn silence_frame() -> [u8; FRAME_SAMPLES] {
        [mulaw::SILENCE; FRAME_SAMPLES]
    }

    #[test]
    fn levels_in_dbfs() {
        assert_eq!(frame_dbfs(&[0; 160]), SILENCE_FLOOR_DBFS);
        assert_eq!(frame_dbfs(&[]), SILENCE_FLOOR_DBFS);
        assert!((frame_dbfs(&tone(-20.0, 160)) + 20.0).abs() < 0.2);
        assert!((frame_dbfs(&[i16::MIN; 160])).abs() < 0.01);
    }

    #[test]
    fn silence_is_unvoiced() {
        let vad = VoiceActivity::default();
        assert!(!vad.is_voiced_mulaw(&silence_frame()));
        assert!(!vad.is_voiced_pcm(&[0; 160]));
        assert!(!vad.is_voiced_mulaw(&[]));
        assert!(!vad.is_voiced_pcm(&[]));
    }

    #[test]
    fn a_minus_20_dbfs_tone_is_voiced() {
        let vad = VoiceActivity::default();
        let pcm = tone(-20.0, 160);
        assert!(vad.is_voiced_pcm(&pcm));
        assert!(vad.is_voiced_mulaw(&mulaw::encode_all(&pcm)));
    }

    #[test]
    fn minus_60_dbfs_noise_is_unvoiced() {
        let vad = VoiceActivity::default();
        let pcm = noise(-60.0, 160);
        assert!((frame_dbfs(&pcm) + 60.0).abs() < 2.0);
        assert!(!vad.is_voiced_pcm(&pcm));
        assert!(!vad.is_voiced_mulaw(&mulaw::encode_all(&pcm)));
    }

    #[test]
    fn mulaw_and_pcm_paths_agree_around_the_threshold() {
        let vad = VoiceActivity::default();
        for tenth_db in -460..-340 {
            let pcm = tone(f64::from(tenth_db) / 10.0, 160);
            let decoded: Vec<i16> = mulaw::encode_all(&pcm)
                .into_iter()
                .map(mulaw::decode)
                .collect();
            let codes = mulaw::encode_all(&pcm);
            assert_eq!(
                vad.is_voiced_mulaw(&codes),
                vad.is_voiced_pcm(&decoded),
                "at {tenth_db} tenths of a dB"
            );
        }
    }

    #[test]
    fn voiced_span_finds_the_speech() {
        let vad = VoiceActivity::default();
        let mut samples = vec![0i16; 160 * 3];
        samples.extend(tone(-20.0, 160 * 5));
        samples.extend(vec![0; 160 * 2 + 40]);
        assert_eq!(voiced_span(&samples, &vad), Some((3, 8)));
        assert_eq!(voiced_span(&[0; 800], &vad), None);
        assert_eq!(voiced_span(&[], &vad), None);
    }

    #[test]
    fn segmenter_reports_start_then_end_with_trailing_silence() {
        let voiced = mulaw::encode_all(&tone(-20.0, 160));
        let silent = silence_frame();
        let mut segmenter = SpeechSegmenter::new(
            VoiceActivity::default(),
            Duration::from_millis(100),
            Duration::from_millis(200),
        );
        assert!(!segmenter.is_speaking());

        let mut events = Vec::new();
        let frames = std::iter::repeat_n(&silent[..], 5)
            .chain(std::iter::repeat_n(&voiced[..], 20))
            .chain(std::iter::repeat_n(&silent[..], 15));
        for (index, frame) in frames.enumerate() {
            if let Some(event) = segmenter.push_frame(frame) {
                events.push((index, event));
            }
        }
        // Five voiced frames (100 ms) start speech; ten silent frames (200 ms) end it.
        assert_eq!(
            events,
            vec![
                (9, SpeechEvent::Started),
                (
                    34,
                    SpeechEvent::Ended {
                        trailing_silence_frames: 10
                    }
                ),
            ]
        );
        assert!(!segmenter.is_speaking());
    }

    #[test]
    fn segmenter_forgives_one_silent_frame_while_starting() {
        let voiced = mulaw::encode_all(&tone(-20.0, 160));
        let silent = silence_frame();
        let new = || {
            SpeechSegmenter::new(
                VoiceActivity::default(),
                Duration::from_millis(60),
                Duration::from_millis(100),
            )
        };

        let mut segmenter = new();
        assert_eq!(segmenter.push_frame(&voiced), None);
        assert_eq!(segmenter.push_frame(&silent), None);
        assert_eq!(segmenter.push_frame(&voiced), None);
        assert_eq!(segmenter.push_frame(&voiced), Some(SpeechEvent::Started));
        assert!(segmenter.is_speaking());

        // Two gaps, or a two-frame gap, restart the count.
        let mut segmenter = new();
        for frame in [&voiced[..], &silent[..], &voiced[..], &silent[..]] {
            assert_eq!(segmenter.push_frame(frame), None);
        }
        assert_eq!(segmenter.push_frame(&voiced), None);
        assert_eq!(segmenter.push_frame(&voiced), None);
        assert_eq!(segmenter.push_frame(&voiced), Some(SpeechEvent::Started));
    }

    #[test]
    fn segmenter_keeps_speaking_through_short_pauses() {
        let voiced = mulaw::encode_all(&tone(-20.0, 160));
        let silent = silence_frame();
        let mut segmenter = SpeechSegmenter::new(
            VoiceActivity::default(),
            Duration::from_millis(20),
            Duration::from_millis(100),
        );
        assert_eq!(segmenter.push_frame(&voiced), Some(SpeechEvent::Started));
        for _ in 0..4 {
            assert_eq!(segmenter.push_frame(&silent), None);
        }
        assert_eq!(segmenter.push_frame(&voiced), None);
        for _ in 0..4 {
            assert_eq!(segmenter.push_frame(&silent), None);
        }
        assert_eq!(
            segmenter.push_frame(&silent),
            Some(SpeechEvent::Ended {
                trailing_silence_frames: 5
            })
        );
    }

    #[test]
    fn segmenter_measures_time_for_odd_frame_lengths() {
        // 80-sample (10 ms) frames: 100 ms of speech is ten of them.
        let voiced = mulaw::encode_all(&tone(-20.0, 80));
        let mut segmenter = SpeechSegmenter::new(
            VoiceActivity::default(),
            Duration::from_millis(100),
            Duration::from_millis(100),
        );
        for _ in 0..9 {
            assert_eq!(segmenter.push_frame(&voiced), None);
        }
        assert_eq!(segmenter.push_frame(&voiced), Some(SpeechEvent::Started));
        assert_eq!(segmenter.push_frame(&[]), None);
        assert!(segmenter.is_speaking());
        segmenter.reset();
        assert!(!segmenter.is_speaking());
    }
}
