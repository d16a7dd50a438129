//! Loading WAV fixtures into the one shape the harness streams: 8 kHz mono 16-bit PCM.
//!
//! Fixtures come from wherever testers record or synthesise them, so the loader accepts
//! every layout `hound` can parse (8/16/24/32-bit integer, 32-bit float, any rate up to
//! [`MAX_SAMPLE_RATE`], any channel count) instead of asking people to convert files by
//! hand first.
//!
//! It is bounded in memory whatever the file: its size is checked before it is opened, the
//! sample count its header claims before a sample is read, and channels are mixed down as
//! they are read, so the most it holds is one channel of [`FixtureLimits::max_duration`] at
//! the file's rate (46 MB at 192 kHz for 60 s), never the file.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::SAMPLE_RATE;
use super::resample::resample;

/// Above this a file is not a recording of speech (and resampling it would cost too much).
pub const MAX_SAMPLE_RATE: u32 = 192_000;

/// How big one fixture may be. A caller's utterance lasts seconds; a file far beyond these
/// is a mistake (a whole recording session, a wrong file) that would cost the harness
/// memory for every call that plays it and could keep every call from ending in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureLimits {
    /// The file's size on disk, and the sample data its header claims.
    pub max_bytes: u64,
    /// Playing time.
    pub max_duration: Duration,
}

impl FixtureLimits {
    /// The limits a scenario's fixtures are held to: 50 MiB and 60 s each.
    pub const DEFAULT: FixtureLimits = FixtureLimits {
        max_bytes: 50 << 20,
        max_duration: Duration::from_secs(60),
    };
}

/// Why a WAV fixture could not be turned into 8 kHz mono audio. Every variant names the
/// file, because scenarios list several and the user needs to know which one to fix.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be opened or read at all.
    #[error("cannot read audio file {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The path names a directory (or a device, a pipe) rather than a file.
    #[error("{} is {what}, not a WAV file", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    /// The file, or the sample data its header claims, is over the size limit.
    #[error(
        "{} {what} {}, over the limit of {} for a fixture",
        path.display(),
        crate::units::format_byte_size(*bytes),
        crate::units::format_byte_size(*limit)
    )]
    TooLarge {
        path: PathBuf,
        /// `is` (the file) or `claims` (its header's data chunk).
        what: &'static str,
        bytes: u64,
        limit: u64,
    },
    /// The audio its header announces plays for longer than the limit.
    #[error(
        "{} holds {} of audio, over the limit of {} for a fixture (one caller utterance)",
        path.display(),
        seconds(*duration),
        seconds(*limit)
    )]
    TooLong {
        path: PathBuf,
        duration: Duration,
        limit: Duration,
    },
    /// The file opened, but its header is not a RIFF/WAVE header.
    #[error("{} is not a WAV file", path.display())]
    NotWav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    /// A WAV file, but in an encoding the loader cannot decode (compressed, odd widths).
    #[error("{} uses an unsupported WAV format: {format}", path.display())]
    UnsupportedFormat { path: PathBuf, format: String },
    /// The header was fine but the sample data is cut short or malformed.
    #[error("the sample data in {} is corrupt or truncated", path.display())]
    CorruptSamples {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    /// A valid WAV file with no samples: streaming it would send nothing.
    #[error("{} contains no audio", path.display())]
    Empty { path: PathBuf },
}

/// `12.5 s`, or `3h 6m 40s` for long ones.
fn seconds(duration: Duration) -> String {
    if duration < Duration::from_secs(120) {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
    }
}

/// Loads any WAV file `hound` can read as 8 kHz mono 16-bit PCM, downmixing by averaging
/// channels and resampling with a band-limited filter, within [`FixtureLimits::DEFAULT`].
pub fn load_wav(path: &Path) -> Result<Vec<i16>, AudioError> {
    load_wav_within(path, FixtureLimits::DEFAULT)
}

/// [`load_wav`] with other limits.
pub fn load_wav_within(path: &Path, limits: FixtureLimits) -> Result<Vec<i16>, AudioError> {
    let reader = open_within(path, limits)?;
    check_header(path, &reader, limits)?;
    let sample_rate = reader.spec().sample_rate;
    let mono = read_mono(path, reader)?;
    let samples = mono_to_8k(&mono, sample_rate);
    if samples.is_empty() {
        return Err(AudioError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(samples)
}

/// Opens a regular file no larger than the limit and reads its WAV header.
fn open_within(
    path: &Path,
    limits: FixtureLimits,
) -> Result<hound::WavReader<BufReader<File>>, AudioError> {
    let metadata = std::fs::metadata(path).map_err(|source| AudioError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    // A pipe or a device would be read forever; a directory cannot be read at all.
    if !metadata.is_file() {
        return Err(AudioError::NotAFile {
            path: path.to_path_buf(),
            what: if metadata.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            },
        });
    }
    if metadata.len() > limits.max_bytes {
        return Err(AudioError::TooLarge {
            path: path.to_path_buf(),
            what: "is",
            bytes: metadata.len(),
            limit: limits.max_bytes,
        });
    }
    let file = File::open(path).map_err(|source| AudioError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    hound::WavReader::new(BufReader::new(file))
        .map_err(|source| classify_header_error(path, source))
}

/// The header's claims, before reading a sample: a rate and channel count it can decode,
/// and no more data or playing time than the limits (the file may have grown since it was
/// measured, and a header may claim more than the file holds).
fn check_header(
    path: &Path,
    reader: &hound::WavReader<BufReader<File>>,
    limits: FixtureLimits,
) -> Result<(), AudioError> {
    let spec = reader.spec();
    let unsupported = |format: String| AudioError::UnsupportedFormat {
        path: path.to_path_buf(),
        format,
    };
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(unsupported(format!(
            "{} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    if spec.sample_rate > MAX_SAMPLE_RATE {
        return Err(unsupported(format!(
            "{} Hz (at most {MAX_SAMPLE_RATE} Hz)",
            spec.sample_rate
        )));
    }
    let claimed = u64::from(reader.len()) * u64::from(spec.bits_per_sample.div_ceil(8));
    if claimed > limits.max_bytes {
        return Err(AudioError::TooLarge {
            path: path.to_path_buf(),
            what: "claims",
            bytes: claimed,
            limit: limits.max_bytes,
        });
    }
    let duration =
        Duration::from_secs_f64(f64::from(reader.duration()) / f64::from(spec.sample_rate));
    if duration > limits.max_duration {
        return Err(AudioError::TooLong {
            path: path.to_path_buf(),
            duration,
            limit: limits.max_duration,
        });
    }
    Ok(())
}

/// Decodes the samples (integer of any width up to 32 bits, or 32-bit float) and averages
/// the channels into one, scaled to -1.0..1.0.
fn read_mono(
    path: &Path,
    reader: hound::WavReader<BufReader<File>>,
) -> Result<Vec<f32>, AudioError> {
    let spec = reader.spec();
    let corrupt = |source| AudioError::CorruptSamples {
        path: path.to_path_buf(),
        source,
    };
    let frames = reader.duration() as usize;
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let full_scale = (1u64 << (bits - 1)) as f32;
            mix_down(
                reader.into_samples::<i32>(),
                spec.channels,
                frames,
                |value| value as f32 / full_scale,
            )
            .map_err(corrupt)
        }
        (hound::SampleFormat::Float, 32) => mix_down(
            reader.into_samples::<f32>(),
            spec.channels,
            frames,
            |value| value,
        )
        .map_err(corrupt),
        (format, bits) => Err(AudioError::UnsupportedFormat {
            path: path.to_path_buf(),
            format: format!("{bits}-bit {format:?} samples"),
        }),
    }
}

/// Averages each frame of interleaved samples as it is read, so only one channel is ever
/// held. A trailing partial frame is ignored.
fn mix_down<S>(
    samples: impl Iterator<Item = hound::Result<S>>,
    channels: u16,
    frames: usize,
    to_f32: impl Fn(S) -> f32,
) -> hound::Result<Vec<f32>> {
    let channels = usize::from(channels.max(1));
    let mut mono = Vec::with_capacity(frames);
    let (mut sum, mut in_frame) = (0.0f32, 0usize);
    for sample in samples {
        sum += to_f32(sample?);
        in_frame += 1;
        if in_frame == channels {
            mono.push(sum / channels as f32);
            (sum, in_frame) = (0.0, 0);
        }
    }
    Ok(mono)
}

fn mono_to_8k(mono: &[f32], rate: u32) -> Vec<i16> {
    resample(mono, rate, SAMPLE_RATE)
        .into_iter()
        .map(to_i16)
        .collect()
}

/// Converts interleaved floating-point PCM (full scale is -1..1) at any rate and channel
/// count to 8 kHz mono 16-bit. Channels are averaged; a trailing partial frame of
/// interleaved samples is ignored; values beyond full scale are clipped.
pub fn pcm_to_8k_mono(samples: &[f32], channels: u16, rate: u32) -> Vec<i16> {
    let channels = usize::from(channels.max(1));
    let mono: Vec<f32> = samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    mono_to_8k(&mono, rate)
}

fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Tells "this is not a WAV file" apart from "a WAV file we cannot decode".
fn classify_header_error(path: &Path, source: hound::Error) -> AudioError {
    let path = path.to_path_buf();
    match source {
        hound::Error::Unsupported => AudioError::UnsupportedFormat {
            path,
            format: "compressed or non-PCM encoding".to_owned(),
        },
        // hound reports a file that ends inside the header as an I/O error of kind
        // `UnexpectedEof` or `Other`; anything else really is a failure to read.
        hound::Error::IoError(error)
            if !matches!(
                error.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::Other
            ) =>
        {
            AudioError::Unreadable {
                path,
                source: error,
            }
        }
        source => AudioError::NotWav { path, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 kHz sine at half scale: RMS -9 dBFS, well inside any converter's passband.
    fn sine(rate: u32, seconds: f32) -> Vec<f32> {
        let count = (rate as f32 * seconds) as usize;
        (0..count)
            .map(|n| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / rate as f32).sin())
            .collect()
    }

    fn write_wav(
        directory: &Path,
        name: &str,
        spec: hound::WavSpec,
        mono: &[f32],
    ) -> std::path::PathBuf {
        let path = directory.join(name);
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for &value in mono {
            for _ in 0..spec.channels {
                match spec.sample_format {
                    hound::SampleFormat::Float => writer.write_sample(value).unwrap(),
                    hound::SampleFormat::Int => {
                        let full_scale = (1i64 << (spec.bits_per_sample - 1)) as f32;
                        let scaled = (value * full_scale).round() as i32;
                        if spec.bits_per_sample == 8 {
                            writer.write_sample(scaled as i8).unwrap();
                        } else {
                            writer.write_sample(scaled).unwrap();
                        }
                    }
                }
            }
        }
        writer.finalize().unwrap();
        path
    }

    fn spec(rate: u32, channels: u16, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    /// Checks a loaded half-second 1 kHz sine: right length, right level.
    fn assert_is_the_sine(samples: &[i16], what: &str) {
        assert!(
            (samples.len() as i64 - 4000).abs() <= 1,
            "{what}: {} samples",
            samples.len()
        );
        let middle = &samples[800..3200];
        let peak = middle.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(
            (15_500..=17_300).contains(&peak),
            "{what}: peak {peak}, expected about 16384"
        );
    }

    #[test]
    fn loads_every_integer_width_and_float() {
        let directory = tempfile::tempdir().unwrap();
        let cases = [
            (8, hound::SampleFormat::Int),
            (16, hound::SampleFormat::Int),
            (24, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Float),
        ];
        for (bits, format) in cases {
            let name = format!("sine-{bits}-{format:?}.wav");
            let path = write_wav(
                directory.path(),
                &name,
                spec(16_000, 1, bits, format),
                &sine(16_000, 0.5),
            );
            assert_is_the_sine(&load_wav(&path).unwrap(), &name);
        }
    }

    #[test]
    fn downmixes_stereo_at_cd_rate() {
        let directory = tempfile::tempdir().unwrap();
        let path = write_wav(
            directory.path(),
            "stereo.wav",
            spec(44_100, 2, 16, hound::SampleFormat::Int),
            &sine(44_100, 0.5),
        );
        assert_is_the_sine(&load_wav(&path).unwrap(), "44.1 kHz stereo");
    }

    #[test]
    fn averages_channels() {
        // Opposite channels cancel; one silent channel halves the level.
        let interleaved: Vec<f32> = sine(8000, 0.1).iter().flat_map(|&s| [s, -s]).collect();
        assert!(
            pcm_to_8k_mono(&interleaved, 2, 8000)
                .iter()
                .all(|&s| s == 0)
        );
        let interleaved: Vec<f32> = [0.5f32, 0.0].repeat(100);
        assert!(
            pcm_to_8k_mono(&interleaved, 2, 8000)
                .iter()
                .all(|&s| s == 8192)
        );
    }

    #[test]
    fn eight_khz_mono_passes_through() {
        let directory = tempfile::tempdir().unwrap();
        let input = sine(8000, 0.5);
        let path = write_wav(
            directory.path(),
            "native.wav",
            spec(8000, 1, 16, hound::SampleFormat::Int),
            &input,
        );
        let loaded = load_wav(&path).unwrap();
        let expected: Vec<i16> = input.iter().map(|&s| to_i16(s)).collect();
        assert_eq!(loaded, expected);
    }

    #[test]
    fn limits_are_checked_before_the_samples_are_read() {
        let directory = tempfile::tempdir().unwrap();
        let path = write_wav(
            directory.path(),
            "two-seconds.wav",
            spec(16_000, 2, 16, hound::SampleFormat::Int),
            &sine(16_000, 2.0),
        );
        let within = |max_bytes, max_seconds| {
            load_wav_within(
                &path,
                FixtureLimits {
                    max_bytes,
                    max_duration: Duration::from_secs(max_seconds),
                },
            )
        };
        assert_eq!(within(1 << 20, 2).unwrap().len(), 16_000);
        // 128,044 bytes on disk.
        let error = within(100_000, 60).unwrap_err();
        assert!(
            matches!(
                error,
                AudioError::TooLarge {
                    what: "is",
                    bytes: 128_044,
                    limit: 100_000,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().ends_with(
                "two-seconds.wav is 125.0 KiB, over the limit of 97.7 KiB for a fixture"
            ),
            "{error}"
        );
        let error = within(1 << 20, 1).unwrap_err();
        assert!(
            error.to_string().ends_with(
                "two-seconds.wav holds 2.0 s of audio, over the limit of 1.0 s for a fixture (one caller utterance)"
            ),
            "{error}"
        );
        let error = load_wav(directory.path()).unwrap_err();
        assert!(
            matches!(
                error,
                AudioError::NotAFile {
                    what: "a directory",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let directory = tempfile::tempdir().unwrap();

        let missing = directory.path().join("missing.wav");
        let error = load_wav(&missing).unwrap_err();
        assert!(matches!(error, AudioError::Unreadable { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.wav"));

        let text = directory.path().join("notes.wav");
        std::fs::write(&text, "this is not audio, it is a shopping list").unwrap();
        let error = load_wav(&text).unwrap_err();
        assert!(matches!(error, AudioError::NotWav { .. }), "{error:?}");
        assert!(error.to_string().contains("notes.wav"));

        let truncated = directory.path().join("truncated.wav");
        std::fs::write(&truncated, b"RIFF").unwrap();
        let error = load_wav(&truncated).unwrap_err();
        assert!(matches!(error, AudioError::NotWav { .. }), "{error:?}");

        let empty = write_wav(
            directory.path(),
            "empty.wav",
            spec(16_000, 1, 16, hound::SampleFormat::Int),
            &[],
        );
        let error = load_wav(&empty).unwrap_err();
        assert!(matches!(error, AudioError::Empty { .. }), "{error:?}");
        assert!(error.to_string().contains("empty.wav"));
    }
}
