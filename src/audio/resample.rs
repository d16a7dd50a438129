//! Band-limited sample-rate conversion.
//!
//! Fixtures arrive at 16, 22.05, 44.1 or 48 kHz and must become 8 kHz. Dropping samples or
//! interpolating linearly would fold everything between 4 kHz and the source Nyquist back
//! into the telephone band as audible aliasing, and a VAD would then measure energy the
//! caller never spoke. So every output sample is a Kaiser-windowed sinc over the input,
//! with the cutoff a little below the lower of the two Nyquist frequencies.

use std::sync::LazyLock;

/// Zero crossings of the sinc on each side of the centre. With the Kaiser window below this
/// gives a transition band of about 8% of the output rate and a stopband below -80 dB.
const ZERO_CROSSINGS: usize = 32;

/// Kernel table entries per zero crossing; linear interpolation between them keeps the
/// table error near -90 dB, below what 16-bit output can show.
const TABLE_STEPS_PER_CROSSING: usize = 512;

/// Kaiser shape parameter: roughly 85 dB of stopband attenuation.
const KAISER_BETA: f64 = 8.6;

/// Fraction of the target Nyquist frequency that passes; the rest is the transition band,
/// so the stopband starts at about the Nyquist frequency itself.
const ROLLOFF: f64 = 0.9;

/// Half of the windowed-sinc kernel, `h(u)` for `u` in zero crossings from 0 to
/// `ZERO_CROSSINGS`, sampled `TABLE_STEPS_PER_CROSSING` times per crossing. Built once:
/// evaluating sines and Bessel functions per tap would dominate fixture loading.
static KERNEL: LazyLock<Vec<f32>> = LazyLock::new(|| {
    let entries = ZERO_CROSSINGS * TABLE_STEPS_PER_CROSSING + 2;
    let normaliser = bessel_i0(KAISER_BETA);
    (0..entries)
        .map(|step| {
            let u = step as f64 / TABLE_STEPS_PER_CROSSING as f64;
            let position = u / ZERO_CROSSINGS as f64;
            if position >= 1.0 {
                return 0.0;
            }
            let window = bessel_i0(KAISER_BETA * (1.0 - position * position).sqrt()) / normaliser;
            (sinc(u) * window) as f32
        })
        .collect()
});

/// Converts `input`, sampled at `from_hz`, to `to_hz`.
///
/// The output has `input.len() * to_hz / from_hz` samples (rounded), and its DC gain is one.
/// Samples outside the input count as silence, so the first and last few milliseconds carry
/// the filter's edge response. Equal rates return the input unchanged; a zero rate returns
/// nothing, since no meaningful conversion exists.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == to_hz {
        return input.to_vec();
    }
    if from_hz == 0 || to_hz == 0 || input.is_empty() {
        return Vec::new();
    }
    let (from, to) = (u64::from(from_hz), u64::from(to_hz));
    let output_len = ((input.len() as u64 * to + from / 2) / from) as usize;

    // Everything below is measured in input samples.
    let scale = (to as f64 / from as f64).min(1.0);
    let cutoff = 0.5 * scale * ROLLOFF; // cycles per input sample
    let crossings_per_sample = 2.0 * cutoff;
    let half_width = ZERO_CROSSINGS as f64 / crossings_per_sample;
    let last = (input.len() - 1) as f64;
    let kernel = KERNEL.as_slice();

    (0..output_len)
        .map(|index| {
            // Computed from the index, not accumulated, so long inputs do not drift.
            let centre = (index as u64 * from) as f64 / to as f64;
            let first = (centre - half_width).ceil().max(0.0) as usize;
            let end = (centre + half_width).floor().min(last) as usize;
            let mut sum = 0.0f64;
            for (offset, &sample) in input[first..=end].iter().enumerate() {
                let distance = ((first + offset) as f64 - centre).abs() * crossings_per_sample;
                sum += f64::from(sample) * f64::from(kernel_at(kernel, distance));
            }
            (sum * crossings_per_sample) as f32
        })
        .collect()
}

/// The kernel at `distance` zero crossings from its centre, interpolated from the table.
fn kernel_at(kernel: &[f32], distance: f64) -> f32 {
    let position = distance * TABLE_STEPS_PER_CROSSING as f64;
    let step = position as usize;
    if step + 1 >= kernel.len() {
        return 0.0;
    }
    let fraction = (position - step as f64) as f32;
    kernel[step] + (kernel[step + 1] - kernel[step]) * fraction
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let angle = std::f64::consts::PI * x;
        angle.sin() / angle
    }
}

/// Modified Bessel function of the first kind, order zero, by its power series; it
/// converges quickly for the arguments a Kaiser window uses.
fn bessel_i0(x: f64) -> f64 {
    let quarter_square = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..64 {
        term *= quarter_square / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(frequency: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<f32> {
        let count = (f64::from(rate) * seconds) as usize;
        (0..count)
            .map(|n| {
                let t = n as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * frequency * t).sin()) as f32
            })
            .collect()
    }

    /// RMS of the middle of the signal, away from the filter's edge response.
    fn middle_rms(samples: &[f32]) -> f64 {
        let margin = samples.len() / 5;
        let middle = &samples[margin..samples.len() - margin];
        let sum: f64 = middle.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / middle.len() as f64).sqrt()
    }

    fn decibels(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    #[test]
    fn equal_rates_are_identity() {
        let input = sine(440.0, 8000, 0.1, 0.5);
        assert_eq!(resample(&input, 8000, 8000), input);
    }

    #[test]
    fn output_length_follows_the_ratio() {
        assert_eq!(resample(&vec![0.0; 48_000], 48_000, 8000).len(), 8000);
        assert_eq!(resample(&vec![0.0; 44_100], 44_100, 8000).len(), 8000);
        assert_eq!(resample(&vec![0.0; 8000], 8000, 16_000).len(), 16_000);
        assert!(resample(&[], 48_000, 8000).is_empty());
        assert!(resample(&[1.0], 0, 8000).is_empty());
    }

    #[test]
    fn passband_sine_keeps_amplitude_and_frequency() {
        let input = sine(1000.0, 48_000, 1.0, 0.5);
        let output = resample(&input, 48_000, 8000);
        assert_eq!(output.len(), 8000);

        let gain = decibels(middle_rms(&output) / middle_rms(&input));
        assert!(gain.abs() < 1.0, "1 kHz gain {gain:.2} dB");

        // A 1 kHz sine crosses zero 2000 times a second.
        let margin = output.len() / 5;
        let middle = &output[margin..output.len() - margin];
        let crossings = middle
            .windows(2)
            .filter(|pair| (pair[0] < 0.0) != (pair[1] < 0.0))
            .count();
        let expected = 2000.0 * middle.len() as f64 / 8000.0;
        assert!(
            (crossings as f64 - expected).abs() <= 2.0,
            "{crossings} zero crossings, expected about {expected}"
        );
    }

    #[test]
    fn content_above_target_nyquist_is_removed() {
        // Dropping five samples in six would alias 6 kHz to 2 kHz at full amplitude.
        let input = sine(6000.0, 48_000, 1.0, 0.5);
        let output = resample(&input, 48_000, 8000);
        let attenuation = decibels(middle_rms(&output) / middle_rms(&input));
        assert!(
            attenuation < -30.0,
            "6 kHz only attenuated {attenuation:.1} dB"
        );
    }

    #[test]
    fn arbitrary_ratio_from_cd_rate() {
        let input = sine(1000.0, 44_100, 1.0, 0.5);
        let output = resample(&input, 44_100, 8000);
        let gain = decibels(middle_rms(&output) / middle_rms(&input));
        assert!(gain.abs() < 1.0, "1 kHz gain {gain:.2} dB");

        let alias = resample(&sine(5000.0, 44_100, 1.0, 0.5), 44_100, 8000);
        let attenuation = decibels(middle_rms(&alias) / middle_rms(&input));
        assert!(
            attenuation < -30.0,
            "5 kHz only attenuated {attenuation:.1} dB"
        );
    }

    #[test]
    fn upsampling_preserves_a_sine() {
        let input = sine(1000.0, 8000, 0.5, 0.5);
        let output = resample(&input, 8000, 16_000);
        let expected = sine(1000.0, 16_000, 0.5, 0.5);
        let margin = output.len() / 5;
        let worst = output[margin..output.len() - margin]
            .iter()
            .zip(&expected[margin..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.01, "upsampled sine off by {worst}");
    }
}
