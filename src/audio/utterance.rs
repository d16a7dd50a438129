//! Audio ready to stream: mu-law bytes and the base64 text of every 20 ms frame, computed
//! once when a fixture loads.
//!
//! Thousands of concurrent calls send the same few utterances fifty times a second each, so
//! the per-frame work must be a slice of text that already exists. An [`Utterance`] holds
//! all its frames' base64 in one shared string, and cloning it for a call copies three
//! pointers.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::synth::speech_like;
use super::vad::{VoiceActivity, voiced_span};
use super::wav::{AudioError, load_wav};
use super::{FRAME_MS, FRAME_SAMPLES};
use crate::twilio::mulaw;

/// Length of the base64 text of one 160-byte frame (with padding), as Twilio sends it.
pub const FRAME_B64_LEN: usize = 216;

const _: () = assert!(FRAME_B64_LEN == FRAME_SAMPLES.div_ceil(3) * 4);

static SILENCE_FRAME_B64: LazyLock<String> =
    LazyLock::new(|| STANDARD.encode([mulaw::SILENCE; FRAME_SAMPLES]));

/// The base64 of one 20 ms frame of mu-law silence, for keeping a stream alive between
/// utterances without encoding anything.
pub fn silence_frame_b64() -> &'static str {
    &SILENCE_FRAME_B64
}

/// A named piece of 8 kHz mu-law audio, split into 20 ms frames with their base64 text
/// precomputed. Cheap to clone: all the data is shared.
#[derive(Clone)]
pub struct Utterance {
    /// Shown in reports and logs, so people can tell which fixture a call played.
    name: Arc<str>,
    /// The mu-law bytes, padded with silence to whole frames; what the fleet should hear.
    mulaw: Arc<[u8]>,
    /// Base64 of every frame, back to back: frame `i` is `[i * 216 .. (i + 1) * 216]`. One
    /// allocation instead of one per frame.
    frames_b64: Arc<str>,
    /// Where speech starts and stops, in frames, so latency can be measured from the end of
    /// speech rather than from the end of the trailing silence.
    voiced: Option<(usize, usize)>,
}

impl Utterance {
    /// Encodes 8 kHz mono PCM. The last frame is padded with mu-law silence.
    pub fn from_pcm(name: &str, samples_8k: &[i16], vad: &VoiceActivity) -> Self {
        let frame_count = samples_8k.len().div_ceil(FRAME_SAMPLES);
        let mut mulaw_bytes = mulaw::encode_all(samples_8k);
        mulaw_bytes.resize(frame_count * FRAME_SAMPLES, mulaw::SILENCE);

        let mut frames_b64 = String::with_capacity(frame_count * FRAME_B64_LEN);
        for frame in mulaw_bytes.chunks_exact(FRAME_SAMPLES) {
            STANDARD.encode_string(frame, &mut frames_b64);
        }
        debug_assert_eq!(frames_b64.len(), frame_count * FRAME_B64_LEN);

        Self {
            name: Arc::from(name),
            mulaw: Arc::from(mulaw_bytes),
            frames_b64: Arc::from(frames_b64),
            voiced: voiced_span(samples_8k, vad),
        }
    }

    /// Loads a WAV fixture (any format [`load_wav`] accepts), named after the file stem.
    pub fn from_wav(path: &Path, vad: &VoiceActivity) -> Result<Self, AudioError> {
        let samples = load_wav(path)?;
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy())
            .unwrap_or_default();
        Ok(Self::from_pcm(&name, &samples, vad))
    }

    /// Seeded speech-like audio from [`speech_like`]: the same seed gives the same frames.
    pub fn synthetic(name: &str, seed: u64, duration: Duration, vad: &VoiceActivity) -> Self {
        Self::from_pcm(name, &speech_like(seed, duration), vad)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of 20 ms frames, counting the padded last one.
    pub fn frame_count(&self) -> usize {
        self.mulaw.len() / FRAME_SAMPLES
    }

    /// The base64 payload of frame `index`, ready for a Media Streams `media` message.
    ///
    /// # Panics
    ///
    /// If `index >= self.frame_count()`.
    pub fn frame_b64(&self, index: usize) -> &str {
        assert!(
            index < self.frame_count(),
            "frame {index} of {} in utterance {}",
            self.frame_count(),
            self.name
        );
        &self.frames_b64[index * FRAME_B64_LEN..(index + 1) * FRAME_B64_LEN]
    }

    /// All mu-law bytes, a whole number of frames.
    pub fn mulaw(&self) -> &[u8] {
        &self.mulaw
    }

    /// Playing time: frame count × 20 ms.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.frame_count() as u64 * FRAME_MS)
    }

    /// `(first voiced frame, one past the last voiced frame)`, or `None` if the VAD found
    /// no speech at all.
    pub fn voiced_frames(&self) -> Option<(usize, usize)> {
        self.voiced
    }
}

/// Summarises instead of dumping the audio, which would flood any log it appears in.
impl fmt::Debug for Utterance {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Utterance")
            .field("name", &self.name)
            .field("frame_count", &self.frame_count())
            .field("voiced_frames", &self.voiced)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Vec<u8> {
        STANDARD.decode(text).unwrap()
    }

    #[test]
    fn silence_frame_is_160_silent_bytes() {
        assert_eq!(silence_frame_b64().len(), FRAME_B64_LEN);
        assert_eq!(decode(silence_frame_b64()), vec![0xFF; 160]);
    }

    #[test]
    fn frames_decode_to_their_mulaw() {
        let vad = VoiceActivity::default();
        let samples: Vec<i16> = (0..400)
            .map(|n| ((n * 97) % 20_000 - 10_000) as i16)
            .collect();
        let utterance = Utterance::from_pcm("ramp", &samples, &vad);
        assert_eq!(utterance.name(), "ramp");
        assert_eq!(utterance.frame_count(), 3);
        assert_eq!(utterance.mulaw().len(), 480);
        assert_eq!(utterance.duration(), Duration::from_millis(60));

        let expected = mulaw::encode_all(&samples);
        for index in 0..3 {
            let frame = decode(utterance.frame_b64(index));
            assert_eq!(frame.len(), 160);
            assert_eq!(frame, utterance.mulaw()[index * 160..(index + 1) * 160]);
            for (offset, &code) in frame.iter().enumerate() {
                let sample = index * 160 + offset;
                let wanted = expected.get(sample).copied().unwrap_or(mulaw::SILENCE);
                assert_eq!(code, wanted, "frame {index} byte {offset}");
            }
        }
        // The padding of the last frame is silence.
        assert!(
            utterance.mulaw()[400..]
                .iter()
                .all(|&b| b == mulaw::SILENCE)
        );
    }

    #[test]
    fn clones_share_the_audio() {
        let utterance = Utterance::synthetic(
            "caller",
            9,
            Duration::from_secs(1),
            &VoiceActivity::default(),
        );
        let clone = utterance.clone();
        assert!(std::ptr::eq(utterance.mulaw(), clone.mulaw()));
        assert!(std::ptr::eq(utterance.frame_b64(3), clone.frame_b64(3)));
    }

    #[test]
    fn synthetic_utterance_is_voiced_and_deterministic() {
        let vad = VoiceActivity::default();
        let first = Utterance::synthetic("a", 5, Duration::from_millis(2000), &vad);
        let second = Utterance::synthetic("b", 5, Duration::from_millis(2000), &vad);
        assert_eq!(first.mulaw(), second.mulaw());
        assert_eq!(first.frame_count(), 100);
        let (start, end) = first.voiced_frames().unwrap();
        assert!(start <= 1 && end >= 99, "voiced {start}..{end}");
    }

    #[test]
    fn empty_audio_has_no_frames() {
        let utterance = Utterance::from_pcm("nothing", &[], &VoiceActivity::default());
        assert_eq!(utterance.frame_count(), 0);
        assert_eq!(utterance.duration(), Duration::ZERO);
        assert_eq!(utterance.voiced_frames(), None);
    }

    #[test]
    fn debug_output_is_a_summary() {
        let utterance = Utterance::synthetic(
            "caller",
            1,
            Duration::from_secs(1),
            &VoiceActivity::default(),
        );
        let text = format!("{utterance:?}");
        assert!(
            text.contains("caller") && text.contains("frame_count: 50"),
            "{text}"
        );
        assert!(text.len() < 200, "{text}");
    }

    #[test]
    fn from_wav_is_named_after_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("hello-there.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for sample in crate::audio::synth::speech_like(2, Duration::from_millis(500)) {
            writer.write_sample(sample).unwrap();
        }
        writer.finalize().unwrap();
        let utterance = Utterance::from_wav(&path, &VoiceActivity::default()).unwrap();
        assert_eq!(utterance.name(), "hello-there");
        assert_eq!(utterance.frame_count(), 25);
    }
}
