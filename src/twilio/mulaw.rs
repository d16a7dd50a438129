//! G.711 mu-law, the only encoding Twilio Media Streams carry (`audio/x-mulaw`, 8 kHz, mono).
//!
//! Encoding follows ITU-T G.711 with the usual bias of 0x84 and clip at 32635; decoding uses a
//! table built at compile time so the per-frame hot path is a lookup.

/// The mu-law code for a zero sample: what Twilio sends while the caller is silent.
pub const SILENCE: u8 = 0xFF;

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Encodes one 16-bit linear PCM sample as a mu-law byte.
pub fn encode(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample);
    let sign = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0x00
    };
    magnitude = magnitude.min(CLIP) + BIAS;
    // The exponent is the position of the highest set bit above bit 7.
    let exponent = (31 - (magnitude as u32).leading_zeros())
        .saturating_sub(7)
        .min(7) as i32;
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decodes one mu-law byte to a 16-bit linear PCM sample.
pub fn decode(code: u8) -> i16 {
    DECODE_TABLE[code as usize]
}

/// Decodes a buffer of mu-law bytes into `out` (cleared first), reusing its allocation.
pub fn decode_into(codes: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(codes.iter().map(|&c| DECODE_TABLE[c as usize]));
}

/// Encodes a buffer of PCM samples as mu-law.
pub fn encode_all(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| encode(s)).collect()
}

const fn decode_slow(code: u8) -> i16 {
    let code = !code as i32;
    let sign = code & 0x80;
    let exponent = (code >> 4) & 0x07;
    let mantissa = code & 0x0F;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

static DECODE_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_slow(i as u8);
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            let sample = decode(code);
            let back = encode(sample);
            // 0x7F and 0xFF both decode to 0; the encoder picks 0xFF (positive zero).
            if code == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "code {code:#04x} decoded to {sample}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(encode(0), 0xFF);
        assert_eq!(decode(0xFF), 0);
        assert_eq!(decode(0x00), -32124);
        assert_eq!(decode(0x80), 32124);
        assert_eq!(encode(i16::MAX), 0x80);
        assert_eq!(encode(i16::MIN), 0x00);
        assert_eq!(encode(-1), 0x7F);
        assert_eq!(decode(0xFE), 8);
        assert_eq!(decode(0xEF), 132);
        assert_eq!(encode(1000), 0xCE);
    }

    #[test]
    fn error_is_bounded_by_the_segment_step() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let decoded = i32::from(decode(encode(sample)));
            let error = (decoded - i32::from(sample)).abs();
            let allowed = (i32::from(sample).abs().min(CLIP) / 16).max(8) + 8;
            assert!(error <= allowed, "{sample} -> {decoded}");
        }
    }
}
