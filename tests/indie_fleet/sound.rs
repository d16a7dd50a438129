//! The indie fleet's own sound handling: G.711 mu-law written from the standard (the
//! bias-132 formulation of ITU-T G.711), a WAV reader on `hound`, a crude box-filter
//! resampler to 8 kHz, and the canned apology prompt it plays when speech synthesis gives up.
//! Written apart from `voxsoak::twilio::mulaw` and `voxsoak::audio` on purpose: the tests
//! grade a fleet whose codec is not the harness's own.

use std::f64::consts::TAU;
use std::io::Cursor;

/// Twilio's rate: mu-law, 8 kHz, mono.
pub const RATE: u32 = 8_000;
/// One Media Streams frame: 20 ms at 8 kHz.
pub const FRAME: usize = 160;

const BIAS: i32 = 0x84;
const CLIP: i32 = 32_635;

/// One 16-bit sample to a mu-law code.
pub fn encode(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample);
    let sign = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0
    };
    let biased = magnitude.min(CLIP) + BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let mut exponent = 7;
    while exponent > 0 && biased & (0x80 << exponent) == 0 {
        exponent -= 1;
    }
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// One mu-law code to a 16-bit sample.
pub fn decode(code: u8) -> i16 {
    let code = !code;
    let exponent = i32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    let value = if code & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    value as i16
}

/// Mono samples (-1.0..=1.0) at `rate` from a WAV file's bytes, channels averaged.
pub fn read_wav(bytes: &[u8]) -> Result<(Vec<f32>, u32), hound::Error> {
    let mut reader = hound::WavReader::new(Cursor::new(bytes))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let full_scale = (1_i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|sample| sample.map(|value| value as f32 / full_scale))
                .collect::<Result<_, _>>()?
        }
    };
    let mono = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect();
    Ok((mono, spec.sample_rate))
}

/// `samples` at `rate` brought to 8 kHz 16-bit: each output sample is the mean of the input
/// samples its 125 µs covers (a box filter: crude, but it keeps most aliasing out of
/// speech). Upsampling repeats samples.
pub fn to_8khz(samples: &[f32], rate: u32) -> Vec<i16> {
    if samples.is_empty() || rate == 0 {
        return Vec::new();
    }
    let step = f64::from(rate) / f64::from(RATE);
    let count = (samples.len() as f64 / step).floor() as usize;
    (0..count)
        .map(|index| {
            let start = (index as f64 * step) as usize;
            let end = (((index + 1) as f64 * step) as usize).clamp(start + 1, samples.len());
            let window = &samples[start.min(samples.len() - 1)..end];
            let mean = window.iter().sum::<f32>() / window.len() as f32;
            (mean.clamp(-1.0, 1.0) * 32_767.0) as i16
        })
        .collect()
}

/// What a caller hears when speech synthesis gives up: 700 ms of a soft two-tone chime,
/// loud enough to be heard as an answer, encoded once.
pub fn apology_prompt() -> Vec<u8> {
    let samples = (RATE as usize * 7) / 10;
    let fade = RATE as usize / 40;
    (0..samples)
        .map(|index| {
            let t = index as f64 / f64::from(RATE);
            let tone = if index < samples / 2 { 523.0 } else { 392.0 };
            let envelope = (index.min(samples - 1 - index) as f64 / fade as f64).min(1.0);
            let value = 8_000.0 * envelope * (TAU * tone * t).sin();
            encode(value as i16)
        })
        .collect()
}

/// Mean absolute amplitude of 16-bit samples, the level the end-of-speech detector compares.
pub fn level(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples
        .iter()
        .map(|&sample| f64::from(sample).abs())
        .sum::<f64>()
        / samples.len() as f64
}

#[test]
fn mulaw_matches_the_g711_table_at_its_corners() {
    assert_eq!(decode(0xFF), 0);
    assert_eq!(decode(0x7F), 0, "negative zero");
    assert_eq!(decode(0x80), 32_124, "the largest positive code");
    assert_eq!(decode(0x00), -32_124, "the largest negative code");
    assert_eq!(decode(0xF0), 120, "the top of the first segment");
    assert_eq!(decode(0xEF), 132, "the bottom of the second segment");
    assert_eq!(encode(0), 0xFF);
    assert_eq!(encode(i16::MAX), 0x80, "clipped into the top code");
    assert_eq!(
        encode(i16::MIN),
        0x00,
        "and the bottom one, without overflow"
    );
}

#[test]
fn every_code_survives_a_round_trip_and_samples_land_near_themselves() {
    for code in 0..=255u8 {
        if code == 0x7F {
            continue; // negative zero encodes as positive zero
        }
        assert_eq!(encode(decode(code)), code, "code {code:#04x}");
    }
    for sample in (i16::MIN..=i16::MAX).step_by(7) {
        let back = i32::from(decode(encode(sample)));
        let error = (back - i32::from(sample)).abs();
        // Half a quantisation step of the sample's segment (steps double from 8 to 1024
        // with the segment), plus the clip at 32,635.
        let allowed = (i32::from(sample).abs() / 16).max(8) + 16;
        let clipped = i32::from(sample).abs() > CLIP;
        assert!(
            clipped || error <= allowed,
            "{sample} came back as {back} (error {error}, allowed {allowed})"
        );
    }
}

#[test]
fn wav_audio_is_read_downmixed_and_brought_to_8khz() {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 24_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut bytes, spec).unwrap();
    // One second of a 200 Hz tone on the left, silence on the right.
    for index in 0..24_000 {
        let value = (16_000.0 * (TAU * 200.0 * f64::from(index) / 24_000.0).sin()) as i16;
        writer.write_sample(value).unwrap();
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    let (mono, rate) = read_wav(bytes.get_ref()).unwrap();
    assert_eq!((mono.len(), rate), (24_000, 24_000));
    let narrow = to_8khz(&mono, rate);
    assert_eq!(narrow.len(), 8_000, "one second at 8 kHz");
    // Half of 16,000 from the downmix; a sine's mean absolute value is 2/π of its peak, and
    // averaging three samples of a 200 Hz tone costs almost nothing.
    let expected = 8_000.0 * 2.0 / std::f64::consts::PI;
    let measured = level(&narrow);
    assert!(
        (measured - expected).abs() < expected * 0.03,
        "level {measured}, expected about {expected}"
    );
    assert!(to_8khz(&[], 24_000).is_empty());
    assert_eq!(
        to_8khz(&[0.5; 4_000], 4_000).len(),
        8_000,
        "upsampling repeats"
    );
}

#[test]
fn the_apology_is_audible_and_fades_in() {
    let prompt = apology_prompt();
    assert_eq!(prompt.len(), 5_600, "700 ms at 8 kHz");
    let pcm: Vec<i16> = prompt.iter().map(|&code| decode(code)).collect();
    assert!(level(&pcm) > 2_000.0, "loud enough to be an answer");
    assert!(i32::from(pcm[0]).abs() < 100, "no click at the start");
}
