//! Audio the harness speaks and listens to, always as Twilio hears it: 8 kHz mono G.711
//! mu-law in 20 ms frames of 160 bytes.
//!
//! The pipeline runs once per fixture, at start-up, so that the per-call hot path only
//! copies pre-encoded text:
//!
//! ```text
//! WAV file ─► wav (decode, downmix) ─► resample (to 8 kHz) ─┐
//!                                                            ├─► utterance (mu-law + base64 frames)
//! seed ─────► synth (speech-like audio) ─────────────────────┘
//! ```
//!
//! [`vad`] goes the other way: it finds speech in the mu-law frames the fleet sends back,
//! without decoding them into a buffer first.

pub mod resample;
pub mod synth;
pub mod utterance;
pub mod vad;
pub mod wav;

#[cfg(test)]
mod fixture_tests;

pub use wav::AudioError;

/// Twilio Media Streams carry 8 kHz audio in both directions; everything here converts to it.
pub const SAMPLE_RATE: u32 = 8000;

/// Samples (and, in mu-law, bytes) in one media frame: 20 ms at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// Length of one media frame, the pace at which Twilio sends and expects audio.
pub const FRAME_MS: u64 = 20;
/// One Media Streams frame of audio, as a duration.
pub const FRAME: std::time::Duration = std::time::Duration::from_millis(FRAME_MS);
