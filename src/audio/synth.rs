//! Seeded synthetic speech-like audio, for scenarios that need many distinct callers
//! without shipping recordings.
//!
//! It is not intelligible, but it has what the fleet's pipeline reacts to: a voiced source
//! with a wandering pitch, formant-like spectral peaks, a syllable rhythm and short pauses.
//! Energy VADs (ours and the fleet's) see one continuous utterance; speech recognisers see
//! something voice-shaped rather than a test tone they might reject outright.

use std::f64::consts::PI;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SAMPLE_RATE;

const RATE: f64 = SAMPLE_RATE as f64;

/// Peak level of the result: -6 dBFS, loud but with headroom for mu-law and the fleet's
/// own gain stages.
const PEAK: f64 = 0.5;

/// Fade at each end, so the first and last frames do not click.
const FADE_SECONDS: f64 = 0.010;

/// Pauses between syllables stay shorter than this, so an endpointer with a typical
/// 200 ms or longer hangover hears one utterance, not several.
const LONGEST_GAP_SECONDS: f64 = 0.110;

/// Highest harmonic frequency generated; the telephone band ends near here.
const TOP_HARMONIC_HZ: f64 = 3600.0;

/// Sample-to-sample smoothing of the amplitude envelope, about a 4 ms time constant: soft
/// enough to avoid clicks at gaps, fast enough to keep syllables distinct.
const ENVELOPE_SMOOTHING: f64 = 0.03;

/// One syllable: a stretch of voicing with its own pitch target and vowel, optionally
/// followed by a pause.
#[derive(Debug, Clone, Copy)]
struct Syllable {
    samples: usize,
    gap_samples: usize,
    pitch_hz: f64,
    first_formant_hz: f64,
    second_formant_hz: f64,
}

impl Syllable {
    fn random(rng: &mut ChaCha8Rng, previous_pitch: f64) -> Self {
        // 3 to 6 syllables a second.
        let seconds = rng.random_range(1.0 / 6.0..1.0 / 3.0);
        let gap_seconds = if rng.random_bool(0.3) {
            rng.random_range(0.030..LONGEST_GAP_SECONDS)
        } else {
            0.0
        };
        Self {
            samples: (seconds * RATE) as usize,
            gap_samples: (gap_seconds * RATE) as usize,
            pitch_hz: (previous_pitch + rng.random_range(-30.0..30.0)).clamp(90.0, 220.0),
            first_formant_hz: rng.random_range(300.0..800.0),
            second_formant_hz: rng.random_range(900.0..2300.0),
        }
    }
}

/// A second-order resonator (Klatt's formant filter), unity gain at DC, peaking at its
/// centre frequency.
#[derive(Debug, Clone, Copy, Default)]
struct Resonator {
    input_gain: f64,
    feedback_1: f64,
    feedback_2: f64,
    previous_1: f64,
    previous_2: f64,
}

impl Resonator {
    fn tune(&mut self, centre_hz: f64, bandwidth_hz: f64) {
        let radius = (-PI * bandwidth_hz / RATE).exp();
        self.feedback_2 = -radius * radius;
        self.feedback_1 = 2.0 * radius * (2.0 * PI * centre_hz / RATE).cos();
        self.input_gain = 1.0 - self.feedback_1 - self.feedback_2;
    }

    fn process(&mut self, input: f64) -> f64 {
        let output = self.input_gain * input
            + self.feedback_1 * self.previous_1
            + self.feedback_2 * self.previous_2;
        self.previous_2 = self.previous_1;
        self.previous_1 = output;
        output
    }
}

/// Speech-like audio at 8 kHz, the same samples for the same seed and duration.
///
/// Voiced harmonics of a pitch wandering between 90 and 220 Hz, shaped by two formant
/// resonances that move from syllable to syllable, amplitude-modulated at 3 to 6 syllables
/// a second with occasional pauses of at most 110 ms, faded in and out over 10 ms and
/// normalised to a -6 dBFS peak.
pub fn speech_like(seed: u64, duration: Duration) -> Vec<i16> {
    let total = (duration.as_secs_f64() * RATE).round() as usize;
    if total == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let plan = plan_syllables(&mut rng, total);

    let mut signal = Vec::with_capacity(total);
    let mut first_formant = Resonator::default();
    let mut second_formant = Resonator::default();
    let mut phase = 0.0f64;
    let mut pitch = plan[0].pitch_hz;
    let mut envelope = 0.0f64;
    let mut syllables = plan.iter();
    let mut syllable = syllables.next().copied();
    let mut position = 0usize;

    while signal.len() < total {
        let Some(current) = syllable else { break };
        if position == 0 {
            first_formant.tune(current.first_formant_hz, 90.0);
            second_formant.tune(current.second_formant_hz, 140.0);
        }
        let voiced = position < current.samples;
        // The envelope rises and falls within each syllable but stays well above zero
        // while voiced, so frames at syllable edges still read as speech.
        let target = if voiced {
            let progress = position as f64 / current.samples as f64;
            0.35 + 0.65 * (PI * progress).sin()
        } else {
            0.0
        };
        envelope += (target - envelope) * ENVELOPE_SMOOTHING;
        // Glide towards each syllable's pitch, with a slow vibrato-like wobble.
        pitch += (current.pitch_hz - pitch) * 0.0015;
        let wobble = 1.0 + 0.02 * (2.0 * PI * 5.0 * signal.len() as f64 / RATE).sin();
        phase = (phase + 2.0 * PI * pitch * wobble / RATE) % (2.0 * PI);

        let source = harmonics(phase, pitch * wobble);
        let shaped = second_formant.process(first_formant.process(source));
        signal.push(shaped * envelope);

        position += 1;
        if position >= current.samples + current.gap_samples {
            position = 0;
            syllable = syllables.next().copied();
        }
    }
    signal.resize(total, 0.0);
    finish(&mut signal)
}

/// Enough syllables to fill `total` samples; no pause after the last one, so the audio
/// ends in speech rather than in a gap.
fn plan_syllables(rng: &mut ChaCha8Rng, total: usize) -> Vec<Syllable> {
    let mut plan = Vec::new();
    let mut covered = 0usize;
    let mut pitch = rng.random_range(110.0..180.0);
    while covered < total {
        let syllable = Syllable::random(rng, pitch);
        pitch = syllable.pitch_hz;
        covered += syllable.samples + syllable.gap_samples;
        plan.push(syllable);
    }
    if let Some(last) = plan.last_mut() {
        last.samples += last.gap_samples;
        last.gap_samples = 0;
    }
    plan
}

/// A band-limited glottal-like source: every harmonic below the telephone band's top, at
/// amplitude 1/k, the -6 dB per octave tilt of a voice.
fn harmonics(phase: f64, pitch_hz: f64) -> f64 {
    let count = (TOP_HARMONIC_HZ / pitch_hz) as usize;
    // sin((k+1)φ) = 2 cos φ sin(kφ) - sin((k-1)φ): one sine and one cosine per sample
    // instead of one per harmonic.
    let twice_cosine = 2.0 * phase.cos();
    let (mut previous, mut current) = (0.0, phase.sin());
    let mut sum = 0.0;
    for k in 1..=count {
        sum += current / k as f64;
        (previous, current) = (current, twice_cosine * current - previous);
    }
    sum
}

/// Fades both ends and scales the peak to [`PEAK`].
fn finish(signal: &mut [f64]) -> Vec<i16> {
    let fade = ((FADE_SECONDS * RATE) as usize)
        .min(signal.len() / 2)
        .max(1);
    let length = signal.len();
    for index in 0..fade.min(length) {
        let gain = index as f64 / fade as f64;
        signal[index] *= gain;
        signal[length - 1 - index] *= gain;
    }
    let peak = signal
        .iter()
        .fold(0.0f64, |peak, &value| peak.max(value.abs()));
    let scale = if peak > 0.0 { PEAK / peak } else { 0.0 };
    signal
        .iter()
        .map(|&value| (value * scale * 32767.0).round() as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::FRAME_SAMPLES;
    use crate::audio::vad::{VoiceActivity, frame_dbfs, voiced_span};

    #[test]
    fn same_seed_same_samples() {
        let duration = Duration::from_millis(1500);
        assert_eq!(speech_like(42, duration), speech_like(42, duration));
        assert_ne!(speech_like(42, duration), speech_like(43, duration));
    }

    #[test]
    fn length_and_level() {
        let samples = speech_like(1, Duration::from_secs(2));
        assert_eq!(samples.len(), 16_000);
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((16_000..=16_400).contains(&peak), "peak {peak}");
        // Faded in and out.
        assert!(samples[0].unsigned_abs() < 100);
        assert!(samples[samples.len() - 1].unsigned_abs() < 100);
        assert!(speech_like(1, Duration::ZERO).is_empty());
        assert_eq!(speech_like(1, Duration::from_millis(5)).len(), 40);
    }

    #[test]
    fn is_voiced_across_its_body() {
        let vad = VoiceActivity::default();
        for seed in 0..20 {
            let samples = speech_like(seed, Duration::from_secs(3));
            let frames: Vec<&[i16]> = samples.chunks(FRAME_SAMPLES).collect();
            let voiced = frames.iter().filter(|f| vad.is_voiced_pcm(f)).count();
            assert!(
                voiced * 10 > frames.len() * 8,
                "seed {seed}: only {voiced} of {} frames voiced",
                frames.len()
            );
            let (first, end) = voiced_span(&samples, &vad).unwrap();
            assert!(
                first <= 1 && end >= frames.len() - 1,
                "seed {seed}: span {first}..{end}"
            );

            // No run of silence long enough to split the utterance.
            let mut longest_gap = 0;
            let mut gap = 0;
            for frame in &frames[first..end] {
                gap = if vad.is_voiced_pcm(frame) { 0 } else { gap + 1 };
                longest_gap = longest_gap.max(gap);
            }
            assert!(
                longest_gap <= 6,
                "seed {seed}: {longest_gap} silent frames in a row"
            );
        }
    }

    #[test]
    fn sounds_like_speech_not_a_tone() {
        let samples = speech_like(3, Duration::from_secs(2));
        let levels: Vec<f32> = samples.chunks(FRAME_SAMPLES).map(frame_dbfs).collect();
        let loudest = levels.iter().copied().fold(f32::MIN, f32::max);
        // Loud frames sit in the range of real speech, and the level moves with syllables.
        assert!(
            (-20.0..-6.0).contains(&loudest),
            "loudest frame {loudest} dBFS"
        );
        let quiet = levels
            .iter()
            .filter(|&&level| level < loudest - 6.0)
            .count();
        assert!(quiet * 10 > levels.len(), "level barely varies");
    }
}
