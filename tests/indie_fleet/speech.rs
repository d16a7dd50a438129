//! The indie fleet's endpointer: when has the caller finished a turn? Energy only, frame by
//! frame, as the cheapest real agents do it: speech starts after a few loud frames in a row,
//! and a turn ends after half a second of near-silence (longer than the pauses people leave
//! at commas, 200 to 350 ms).

use std::time::Duration;

use super::sound::{FRAME, RATE, level};

/// A frame louder than this (mean absolute amplitude, about -40 dBFS) is speech.
const LOUD: f64 = 300.0;
/// Loud frames in a row before a turn starts: a click is not a caller.
const START_FRAMES: u32 = 3;
/// Quiet frames in a row that end a turn: 500 ms.
const END_FRAMES: u32 = 25;

const FRAME_TIME: Duration = Duration::from_millis(20);

/// Finds the ends of caller turns in a stream of 16-bit samples.
#[derive(Debug, Default)]
pub struct Endpointer {
    /// Samples not yet making up a whole frame.
    pending: Vec<i16>,
    /// Loud frames in a row while no turn has started.
    loud_run: u32,
    /// The turn in progress: its speech so far, up to its last loud frame.
    turn: Option<Duration>,
    /// Frames since the turn's last loud frame.
    quiet_run: u32,
}

impl Endpointer {
    /// Feeds samples; the length of each turn that ended in them (from its first loud
    /// frame to its last).
    pub fn push(&mut self, samples: &[i16]) -> Vec<Duration> {
        self.pending.extend_from_slice(samples);
        let mut ended = Vec::new();
        let mut used = 0;
        while self.pending.len() - used >= FRAME {
            let loud = level(&self.pending[used..used + FRAME]) > LOUD;
            used += FRAME;
            ended.extend(self.frame(loud));
        }
        self.pending.drain(..used);
        ended
    }

    fn frame(&mut self, loud: bool) -> Option<Duration> {
        match self.turn.as_mut() {
            None if loud => {
                self.loud_run += 1;
                if self.loud_run >= START_FRAMES {
                    self.turn = Some(FRAME_TIME * self.loud_run);
                    self.quiet_run = 0;
                }
                None
            }
            None => {
                self.loud_run = 0;
                None
            }
            Some(spoken) if loud => {
                *spoken += FRAME_TIME * (self.quiet_run + 1);
                self.quiet_run = 0;
                None
            }
            Some(_) => {
                self.quiet_run += 1;
                if self.quiet_run < END_FRAMES {
                    return None;
                }
                self.loud_run = 0;
                self.quiet_run = 0;
                self.turn.take()
            }
        }
    }
}

/// How long `samples` at 8 kHz last.
#[cfg(test)]
fn duration_of(samples: usize) -> Duration {
    Duration::from_secs_f64(samples as f64 / f64::from(RATE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indie_fleet::sound::{decode, encode, read_wav, to_8khz};

    fn tone(milliseconds: usize) -> Vec<i16> {
        (0..milliseconds * 8)
            .map(|index| (6_000.0 * (index as f64 * 0.3).sin()) as i16)
            .collect()
    }

    fn silence(milliseconds: usize) -> Vec<i16> {
        vec![0; milliseconds * 8]
    }

    #[test]
    fn a_turn_ends_after_half_a_second_of_silence_and_not_before() {
        let mut endpointer = Endpointer::default();
        assert!(endpointer.push(&tone(1_000)).is_empty());
        assert!(
            endpointer.push(&silence(480)).is_empty(),
            "480 ms of silence is a pause"
        );
        let ended = endpointer.push(&silence(40));
        assert_eq!(ended.len(), 1, "500 ms of silence ends the turn");
        assert_eq!(
            ended[0],
            Duration::from_secs(1),
            "the speech, not the silence"
        );
        assert!(
            endpointer.push(&silence(3_000)).is_empty(),
            "silence alone is no turn"
        );
    }

    #[test]
    fn pauses_at_commas_stay_inside_one_turn() {
        let mut endpointer = Endpointer::default();
        let mut ended = Vec::new();
        for _ in 0..3 {
            ended.extend(endpointer.push(&tone(400)));
            ended.extend(endpointer.push(&silence(350)));
        }
        ended.extend(endpointer.push(&silence(600)));
        assert_eq!(
            ended,
            vec![Duration::from_millis(3 * 400 + 2 * 350)],
            "one turn from the first word to the last"
        );
    }

    #[test]
    fn a_click_is_not_a_caller_and_frames_may_arrive_in_odd_pieces() {
        let mut endpointer = Endpointer::default();
        let mut click = tone(40);
        click.extend(silence(1_000));
        assert!(
            endpointer.push(&click).is_empty(),
            "two loud frames are a click"
        );
        let mut speech = tone(600);
        speech.extend(silence(600));
        let ended: Vec<Duration> = speech
            .chunks(37)
            .flat_map(|piece| endpointer.push(piece))
            .collect();
        assert_eq!(ended, vec![duration_of(600 * 8)]);
    }

    #[test]
    fn each_fixture_utterance_through_mulaw_is_one_turn() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        for name in ["order-status", "customer-number", "goodbye", "okay"] {
            let bytes = std::fs::read(fixtures.join(format!("{name}.wav"))).unwrap();
            let (samples, rate) = read_wav(&bytes).unwrap();
            // As a caller's audio arrives: 8 kHz mu-law, then a second of line silence.
            let mut line: Vec<i16> = to_8khz(&samples, rate)
                .into_iter()
                .map(|sample| decode(encode(sample)))
                .collect();
            let spoken = duration_of(line.len());
            line.extend(silence(1_000));
            let mut endpointer = Endpointer::default();
            let ended: Vec<Duration> = line
                .chunks(FRAME)
                .flat_map(|frame| endpointer.push(frame))
                .collect();
            assert_eq!(ended.len(), 1, "{name}: {ended:?}");
            assert!(
                ended[0] <= spoken && ended[0] + Duration::from_millis(300) >= spoken,
                "{name}: heard {:?} of {spoken:?}",
                ended[0]
            );
        }
    }
}
