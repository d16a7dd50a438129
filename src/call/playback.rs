//! The caller's earpiece: the fleet's audio "plays" here at real-time speed.
//!
//! Nothing is kept per frame. Audio that arrives is classified (voiced or not) at once and
//! placed on a virtual timeline: a chunk starts playing when the audio queued before it has
//! drained, or at once when nothing is queued. From that timeline the call learns when the
//! agent's voice was first heard after the caller stopped (response latency), the silent gaps
//! inside a reply (dead air), and when each `mark` is due to be echoed, as Twilio does.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::audio::FRAME;
use crate::audio::FRAME_SAMPLES;
use crate::audio::vad::VoiceActivity;

/// One mu-law byte is one sample at 8 kHz.
const SAMPLE: Duration = Duration::from_micros(125);

/// A pause inside a reply longer than this counts as dead air. Natural pauses between words
/// and sentences are shorter (up to about 350 ms at a full stop).
pub const DEAD_AIR_MIN_GAP: Duration = Duration::from_millis(500);

/// After the fleet's end-of-reply mark has played, the reply is over once no new audio came
/// for this long (fleets that mark every sentence keep talking within it).
const MARK_SETTLE: Duration = Duration::from_millis(200);

/// A mark the fleet sent, waiting for the audio queued before it to play.
#[derive(Debug)]
struct PendingMark {
    due: Instant,
    name: String,
    received: Instant,
}

/// A mark whose audio has played: echo it back to the fleet now.
#[derive(Debug, PartialEq, Eq)]
pub struct DueMark {
    pub name: String,
    /// How long the mark waited for its audio to play.
    pub waited: Duration,
}

/// Where the agent's reply to the current caller turn stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyState {
    /// No voiced agent audio has played since the caller stopped.
    NotStarted,
    /// The agent is talking (or pausing briefly).
    Speaking,
    /// The reply is over: it was followed by a mark and silence, or by `reply_silence`.
    Done,
}

/// What one finished reply measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyMeasure {
    /// End of caller speech to the first voiced agent audio heard.
    pub latency: Duration,
    /// Sum of the gaps longer than [`DEAD_AIR_MIN_GAP`] between voiced audio of the reply.
    pub dead_air: Duration,
}

/// The playback buffer and reply tracker of one call.
#[derive(Debug)]
pub struct Playback {
    vad: VoiceActivity,
    reply_silence: Duration,
    /// When the audio queued so far will have finished playing.
    drained_at: Instant,
    marks: VecDeque<PendingMark>,
    /// Bytes of an incomplete 20 ms frame, kept so voice detection always sees whole frames.
    carry: Vec<u8>,
    /// Play time of the first byte of `carry`.
    carry_at: Instant,
    /// Caller speech ended here; voiced audio playing from here on is the reply.
    anchor: Option<Instant>,
    first_voiced: Option<Instant>,
    last_voiced_end: Option<Instant>,
    dead_air: Duration,
    /// Play time of a mark the fleet sent after voiced audio of this reply.
    reply_mark: Option<Instant>,
    /// The first voiced agent audio of the whole call, for time to first audio.
    first_voiced_in_call: Option<Instant>,
    /// When the last voiced audio queued so far ends, whatever turn it belongs to.
    voiced_until: Option<Instant>,
}

impl Playback {
    pub fn new(now: Instant, vad: VoiceActivity, reply_silence: Duration) -> Self {
        Playback {
            vad,
            reply_silence,
            drained_at: now,
            marks: VecDeque::new(),
            carry: Vec::with_capacity(FRAME_SAMPLES),
            carry_at: now,
            anchor: None,
            first_voiced: None,
            last_voiced_end: None,
            dead_air: Duration::ZERO,
            reply_mark: None,
            first_voiced_in_call: None,
            voiced_until: None,
        }
    }

    /// Queues decoded mu-law audio that arrived at `now`.
    pub fn push_audio(&mut self, now: Instant, mulaw: &[u8]) {
        if mulaw.is_empty() {
            return;
        }
        let start = self.drained_at.max(now);
        if self.carry.is_empty() || start > self.drained_at {
            // Playback ran dry before this chunk: what was carried has already played.
            self.carry.clear();
            self.carry_at = start;
        }
        self.drained_at = start + SAMPLE * mulaw.len() as u32;
        let mut rest = mulaw;
        while !rest.is_empty() {
            let take = (FRAME_SAMPLES - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() == FRAME_SAMPLES {
                let at = self.carry_at;
                let voiced = self.vad.is_voiced_mulaw(&self.carry);
                self.carry.clear();
                self.carry_at = at + FRAME;
                if voiced {
                    self.voiced_frame(at);
                }
            }
        }
    }

    fn voiced_frame(&mut self, at: Instant) {
        self.voiced_until = Some(
            self.voiced_until
                .map_or(at + FRAME, |end| end.max(at + FRAME)),
        );
        if self.first_voiced_in_call.is_none() {
            self.first_voiced_in_call = Some(at);
        }
        let Some(anchor) = self.anchor else { return };
        if at < anchor {
            return;
        }
        match self.last_voiced_end {
            None => self.first_voiced = Some(at),
            Some(end) if at > end => {
                let gap = at - end;
                if gap >= DEAD_AIR_MIN_GAP {
                    self.dead_air += gap;
                }
            }
            Some(_) => {}
        }
        self.last_voiced_end = Some(at + FRAME);
    }

    /// The fleet sent a mark at `now`. Returns it at once when nothing is queued, as Twilio
    /// echoes a mark immediately when there is no audio before it.
    pub fn push_mark(&mut self, now: Instant, name: String) -> Option<DueMark> {
        if self.first_voiced.is_some() {
            self.reply_mark = Some(self.drained_at.max(now));
        }
        if self.drained_at <= now && self.marks.is_empty() {
            return Some(DueMark {
                name,
                waited: Duration::ZERO,
            });
        }
        self.marks.push_back(PendingMark {
            due: self.drained_at.max(now),
            name,
            received: now,
        });
        None
    }

    /// Marks whose audio has played by `now`, in the order the fleet sent them.
    pub fn due_marks(&mut self, now: Instant) -> impl Iterator<Item = DueMark> + '_ {
        std::iter::from_fn(move || {
            let first = self.marks.front()?;
            if first.due > now {
                return None;
            }
            let mark = self.marks.pop_front()?;
            Some(DueMark {
                waited: now.saturating_duration_since(mark.received),
                name: mark.name,
            })
        })
    }

    /// The fleet sent `clear`: unplayed audio is dropped and every pending mark is echoed.
    pub fn clear(&mut self, now: Instant) -> Vec<DueMark> {
        self.drained_at = self.drained_at.min(now);
        self.carry.clear();
        self.carry_at = now;
        if self.first_voiced.is_some_and(|t| t >= now) {
            self.first_voiced = None;
            self.last_voiced_end = None;
            self.dead_air = Duration::ZERO;
        } else if let Some(end) = self.last_voiced_end {
            self.last_voiced_end = Some(end.min(now));
        }
        if let Some(end) = self.voiced_until {
            self.voiced_until = Some(end.min(now));
        }
        if self.first_voiced_in_call.is_some_and(|t| t >= now) {
            self.first_voiced_in_call = None;
        }
        if self.reply_mark.is_some_and(|t| t > now) {
            self.reply_mark = Some(now);
        }
        self.marks
            .drain(..)
            .map(|mark| DueMark {
                waited: now.saturating_duration_since(mark.received),
                name: mark.name,
            })
            .collect()
    }

    /// The caller stopped speaking at `anchor`: what plays from here on is the reply.
    pub fn expect_reply(&mut self, anchor: Instant) {
        self.anchor = Some(anchor);
        self.dead_air = Duration::ZERO;
        self.reply_mark = None;
        // Voiced audio queued earlier that is still to play after the anchor is the start of
        // the reply (an agent answering before the caller's last frame was out).
        match self.voiced_until {
            Some(end) if end > anchor => {
                self.first_voiced = Some(anchor);
                self.last_voiced_end = Some(end);
            }
            _ => {
                self.first_voiced = None;
                self.last_voiced_end = None;
            }
        }
    }

    /// Where the reply stands at `now`.
    pub fn reply_state(&self, now: Instant) -> ReplyState {
        let Some(first) = self.first_voiced.filter(|&t| t <= now) else {
            return ReplyState::NotStarted;
        };
        let last_end = self.last_voiced_end.unwrap_or(first);
        if let Some(mark) = self.reply_mark
            && mark >= last_end
            && now >= mark + MARK_SETTLE
            && now >= self.drained_at + MARK_SETTLE
        {
            return ReplyState::Done;
        }
        if now >= last_end + self.reply_silence {
            return ReplyState::Done;
        }
        ReplyState::Speaking
    }

    /// The measure of the reply once it has started.
    pub fn reply_measure(&self) -> Option<ReplyMeasure> {
        let anchor = self.anchor?;
        let first = self.first_voiced?;
        Some(ReplyMeasure {
            latency: first.saturating_duration_since(anchor),
            dead_air: self.dead_air,
        })
    }

    /// When the first voiced agent audio of the call played, if it has by `now`.
    pub fn first_voiced_in_call(&self, now: Instant) -> Option<Instant> {
        self.first_voiced_in_call.filter(|&t| t <= now)
    }

    /// Whether audio is still queued at `now`.
    pub fn is_playing(&self, now: Instant) -> bool {
        self.drained_at > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::mulaw;

    fn voiced(ms: u64) -> Vec<u8> {
        // A 400 Hz square wave at about -10 dBFS.
        (0..ms * 8)
            .map(|i| mulaw::encode(if (i / 10) % 2 == 0 { 10_000 } else { -10_000 }))
            .collect()
    }

    fn silent(ms: u64) -> Vec<u8> {
        vec![mulaw::SILENCE; (ms * 8) as usize]
    }

    fn playback(t0: Instant) -> Playback {
        Playback::new(t0, VoiceActivity::default(), Duration::from_millis(1500))
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn mark_with_nothing_queued_is_echoed_at_once() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        let due = p.push_mark(t0, "m1".into());
        assert_eq!(
            due,
            Some(DueMark {
                name: "m1".into(),
                waited: Duration::ZERO
            })
        );
    }

    #[test]
    fn mark_waits_for_queued_audio_to_play() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.push_audio(t0, &voiced(500));
        assert_eq!(p.push_mark(t0, "end".into()), None);
        assert_eq!(p.due_marks(t0 + 499 * MS).count(), 0);
        let due: Vec<_> = p.due_marks(t0 + 500 * MS).collect();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].name, "end");
        assert_eq!(due[0].waited, 500 * MS);
    }

    #[test]
    fn marks_keep_their_order_and_audio_queues_behind_audio() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.push_audio(t0, &voiced(200));
        p.push_mark(t0, "a".into());
        p.push_audio(t0 + 10 * MS, &voiced(200));
        p.push_mark(t0 + 10 * MS, "b".into());
        let at_250: Vec<_> = p.due_marks(t0 + 250 * MS).map(|m| m.name).collect();
        assert_eq!(at_250, ["a"]);
        let at_400: Vec<_> = p.due_marks(t0 + 400 * MS).map(|m| m.name).collect();
        assert_eq!(at_400, ["b"]);
    }

    #[test]
    fn clear_drops_unplayed_audio_and_echoes_pending_marks() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.push_audio(t0, &voiced(2000));
        p.push_mark(t0, "x".into());
        p.push_mark(t0, "y".into());
        let echoed: Vec<_> = p.clear(t0 + 100 * MS).into_iter().map(|m| m.name).collect();
        assert_eq!(echoed, ["x", "y"]);
        assert!(!p.is_playing(t0 + 100 * MS));
        // New audio after the clear plays at once.
        p.push_audio(t0 + 150 * MS, &voiced(100));
        assert!(p.is_playing(t0 + 200 * MS));
        assert!(!p.is_playing(t0 + 250 * MS));
    }

    #[test]
    fn reply_latency_is_measured_from_the_anchor_to_first_voiced_audio_heard() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.expect_reply(t0);
        // 100 ms of silence then voice, arriving 300 ms after the caller stopped.
        let mut chunk = silent(100);
        chunk.extend(voiced(600));
        p.push_audio(t0 + 300 * MS, &chunk);
        assert_eq!(p.reply_state(t0 + 350 * MS), ReplyState::NotStarted);
        assert_eq!(p.reply_state(t0 + 400 * MS), ReplyState::Speaking);
        let measure = p.reply_measure().unwrap();
        assert_eq!(measure.latency, 400 * MS);
        assert_eq!(measure.dead_air, Duration::ZERO);
    }

    #[test]
    fn reply_is_done_after_its_mark_plays_and_settles() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.expect_reply(t0);
        p.push_audio(t0 + 100 * MS, &voiced(400));
        p.push_mark(t0 + 100 * MS, "reply".into());
        assert_eq!(p.reply_state(t0 + 500 * MS), ReplyState::Speaking);
        assert_eq!(p.reply_state(t0 + 700 * MS), ReplyState::Done);
    }

    #[test]
    fn reply_without_mark_is_done_after_reply_silence() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.expect_reply(t0);
        p.push_audio(t0, &voiced(400));
        assert_eq!(p.reply_state(t0 + 1800 * MS), ReplyState::Speaking);
        assert_eq!(p.reply_state(t0 + 1900 * MS), ReplyState::Done);
    }

    #[test]
    fn underrun_inside_a_reply_is_dead_air() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.expect_reply(t0);
        p.push_audio(t0, &voiced(300));
        // Next chunk arrives 1100 ms later: 800 ms with nothing to play.
        p.push_audio(t0 + 1100 * MS, &voiced(300));
        // And a natural pause that is not dead air.
        p.push_audio(t0 + 1800 * MS, &voiced(100));
        assert_eq!(p.reply_measure().unwrap().dead_air, 800 * MS);
    }

    #[test]
    fn audio_before_the_anchor_is_not_the_reply_but_is_first_audio() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.push_audio(t0, &voiced(200));
        assert_eq!(p.first_voiced_in_call(t0 + 10 * MS), Some(t0));
        p.expect_reply(t0 + 1000 * MS);
        assert_eq!(p.reply_state(t0 + 1100 * MS), ReplyState::NotStarted);
        assert!(p.reply_measure().is_none());
    }

    #[test]
    fn reply_audio_queued_before_the_anchor_still_counts() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        // The agent starts answering while the caller's last frames are still going out.
        p.push_audio(t0, &voiced(600));
        p.expect_reply(t0 + 200 * MS);
        assert_eq!(p.reply_state(t0 + 300 * MS), ReplyState::Speaking);
        assert_eq!(p.reply_measure().unwrap().latency, Duration::ZERO);
    }

    #[test]
    fn partial_frames_are_carried_across_chunks() {
        let t0 = Instant::now();
        let mut p = playback(t0);
        p.expect_reply(t0);
        let audio = voiced(40);
        // 320 bytes split at an odd place: the VAD must still see two whole frames.
        p.push_audio(t0, &audio[..100]);
        p.push_audio(t0, &audio[100..]);
        assert_eq!(p.reply_measure().unwrap().latency, Duration::ZERO);
        assert!(p.is_playing(t0 + 39 * MS));
        assert!(!p.is_playing(t0 + 40 * MS));
    }
}
