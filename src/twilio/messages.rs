//! Media Streams messages, exactly as Twilio puts them on the wire.
//!
//! Twilio → fleet ([`TwilioEvent`]): `connected`, `start`, `media`, `mark`, `dtmf`, `stop`.
//! `sequenceNumber`, `chunk` and `timestamp` are strings on the wire; `connected` carries no
//! streamSid. Fleet → Twilio ([`FleetMessage`]): `media` (raw mu-law of any length, base64,
//! no file header), `mark`, `clear`.
//!
//! The per-frame path does not go through serde: [`MediaFrameEncoder`] fills a template and
//! produces byte for byte what serde would.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A message Twilio sends to the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum TwilioEvent {
    Connected {
        protocol: String,
        version: String,
    },
    #[serde(rename_all = "camelCase")]
    Start {
        sequence_number: String,
        start: StartMeta,
        stream_sid: String,
    },
    #[serde(rename_all = "camelCase")]
    Media {
        sequence_number: String,
        media: MediaChunk,
        stream_sid: String,
    },
    #[serde(rename_all = "camelCase")]
    Mark {
        sequence_number: String,
        stream_sid: String,
        mark: MarkMeta,
    },
    #[serde(rename_all = "camelCase")]
    Dtmf {
        stream_sid: String,
        sequence_number: String,
        dtmf: DtmfMeta,
    },
    #[serde(rename_all = "camelCase")]
    Stop {
        sequence_number: String,
        stream_sid: String,
        stop: StopMeta,
    },
}

/// The `start` message's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMeta {
    pub account_sid: String,
    pub stream_sid: String,
    pub call_sid: String,
    pub tracks: Vec<String>,
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
}

/// Always `audio/x-mulaw`, 8000 Hz, mono for Media Streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u32,
}

impl Default for MediaFormat {
    fn default() -> Self {
        MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        }
    }
}

/// One `media` message's audio: 20 ms, 160 mu-law bytes, base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaChunk {
    pub track: String,
    pub chunk: String,
    pub timestamp: String,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkMeta {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DtmfMeta {
    pub track: String,
    pub digit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopMeta {
    pub account_sid: String,
    pub call_sid: String,
}

impl TwilioEvent {
    pub fn connected() -> Self {
        TwilioEvent::Connected {
            protocol: "Call".into(),
            version: "1.0.0".into(),
        }
    }

    pub fn start(
        sequence: u64,
        stream_sid: &str,
        account_sid: &str,
        call_sid: &str,
        custom_parameters: BTreeMap<String, String>,
    ) -> Self {
        TwilioEvent::Start {
            sequence_number: sequence.to_string(),
            start: StartMeta {
                account_sid: account_sid.into(),
                stream_sid: stream_sid.into(),
                call_sid: call_sid.into(),
                tracks: vec!["inbound".into()],
                custom_parameters,
                media_format: MediaFormat::default(),
            },
            stream_sid: stream_sid.into(),
        }
    }

    pub fn mark(sequence: u64, stream_sid: &str, name: &str) -> Self {
        TwilioEvent::Mark {
            sequence_number: sequence.to_string(),
            stream_sid: stream_sid.into(),
            mark: MarkMeta { name: name.into() },
        }
    }

    pub fn dtmf(sequence: u64, stream_sid: &str, digit: char) -> Self {
        TwilioEvent::Dtmf {
            stream_sid: stream_sid.into(),
            sequence_number: sequence.to_string(),
            dtmf: DtmfMeta {
                track: "inbound_track".into(),
                digit: digit.to_string(),
            },
        }
    }

    pub fn stop(sequence: u64, stream_sid: &str, account_sid: &str, call_sid: &str) -> Self {
        TwilioEvent::Stop {
            sequence_number: sequence.to_string(),
            stream_sid: stream_sid.into(),
            stop: StopMeta {
                account_sid: account_sid.into(),
                call_sid: call_sid.into(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("Twilio events always serialize")
    }
}

/// Why a message could not be understood. `kind()` is a stable label for counting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    #[error("unknown or missing event {0:?}")]
    UnknownEvent(String),
    #[error("invalid {event} message: {detail}")]
    InvalidMessage { event: String, detail: String },
}

impl ProtocolError {
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolError::InvalidJson(_) => "invalid_json",
            ProtocolError::UnknownEvent(_) => "unknown_event",
            ProtocolError::InvalidMessage { .. } => "invalid_message",
        }
    }
}

/// Why `text` did not deserialize: not JSON at all, JSON without a known event, or a known
/// event of the wrong shape. Only runs on the error path.
fn classify_json_error(text: &str, known: &[&str], error: serde_json::Error) -> ProtocolError {
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(_) => ProtocolError::InvalidJson(error.to_string()),
        Ok(serde_json::Value::Object(object)) => match object.get("event") {
            Some(serde_json::Value::String(event)) if known.contains(&event.as_str()) => {
                ProtocolError::InvalidMessage {
                    event: truncate(event),
                    detail: error.to_string(),
                }
            }
            Some(serde_json::Value::String(event)) => ProtocolError::UnknownEvent(truncate(event)),
            _ => ProtocolError::UnknownEvent("<missing>".into()),
        },
        Ok(_) => ProtocolError::UnknownEvent("<not an object>".into()),
    }
}

const TWILIO_EVENTS: [&str; 6] = ["connected", "start", "media", "mark", "dtmf", "stop"];

/// Parses a message Twilio (or the harness) sent to a fleet.
pub fn parse_twilio_event(text: &str) -> Result<TwilioEvent, ProtocolError> {
    serde_json::from_str(text).map_err(|error| classify_json_error(text, &TWILIO_EVENTS, error))
}

#[derive(Deserialize)]
struct InboundMediaView<'a> {
    #[serde(borrow)]
    event: Text<'a>,
    #[serde(borrow, default)]
    media: Option<RawMedia<'a>>,
}

/// The base64 payload of an inbound `media` message, borrowed, without building the whole
/// event: the per-frame path of a fleet (50 messages a second per call). None for any other
/// message, which [`parse_twilio_event`] then handles.
pub fn inbound_media_payload(text: &str) -> Option<Cow<'_, str>> {
    let view: InboundMediaView<'_> = serde_json::from_str(text).ok()?;
    if view.event.0 != "media" {
        return None;
    }
    view.media?.payload.map(|Text(payload)| payload)
}

/// A message a fleet sends to Twilio.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetMessage<'a> {
    /// Audio to play: raw mu-law 8 kHz, base64, any length.
    Media {
        stream_sid: Cow<'a, str>,
        payload: Cow<'a, str>,
    },
    /// Echo `name` back once the audio sent before it has played.
    Mark {
        stream_sid: Cow<'a, str>,
        name: Cow<'a, str>,
    },
    /// Drop unplayed audio and echo pending marks.
    Clear { stream_sid: Cow<'a, str> },
}

const FLEET_EVENTS: [&str; 3] = ["media", "mark", "clear"];

/// A string borrowed from the message when it has no escapes. (`Option<Cow<str>>` alone
/// always copies; the newtype makes serde borrow.)
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFleetMessage<'a> {
    #[serde(borrow)]
    event: Option<Text<'a>>,
    #[serde(borrow, default)]
    stream_sid: Option<Text<'a>>,
    #[serde(borrow, default)]
    media: Option<RawMedia<'a>>,
    #[serde(borrow, default)]
    mark: Option<RawMark<'a>>,
}

#[derive(Deserialize)]
struct RawMedia<'a> {
    #[serde(borrow)]
    payload: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawMark<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
}

/// Parses what a fleet sent; lenient about extra fields, strict about required ones.
pub fn parse_fleet_message(text: &str) -> Result<FleetMessage<'_>, ProtocolError> {
    let raw: RawFleetMessage<'_> = serde_json::from_str(text)
        .map_err(|error| classify_json_error(text, &FLEET_EVENTS, error))?;
    let Some(Text(event)) = raw.event else {
        return Err(ProtocolError::UnknownEvent("<missing>".into()));
    };
    let missing = |detail: &str| ProtocolError::InvalidMessage {
        event: truncate(&event),
        detail: detail.into(),
    };
    let sid = raw.stream_sid.map(|Text(sid)| sid);
    let stream_sid = || sid.clone().ok_or_else(|| missing("no streamSid"));
    match event.as_ref() {
        "media" => Ok(FleetMessage::Media {
            stream_sid: stream_sid()?,
            payload: raw
                .media
                .and_then(|media| media.payload)
                .map(|Text(payload)| payload)
                .ok_or_else(|| missing("no media.payload"))?,
        }),
        "mark" => Ok(FleetMessage::Mark {
            stream_sid: stream_sid()?,
            name: raw
                .mark
                .and_then(|mark| mark.name)
                .map(|Text(name)| name)
                .ok_or_else(|| missing("no mark.name"))?,
        }),
        "clear" => Ok(FleetMessage::Clear {
            stream_sid: stream_sid()?,
        }),
        other => Err(ProtocolError::UnknownEvent(truncate(other))),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// `{"event":"media","streamSid":…,"media":{"payload":…}}`, as a fleet sends audio.
pub fn fleet_media_json(stream_sid: &str, payload_b64: &str) -> String {
    serde_json::json!({"event": "media", "streamSid": stream_sid, "media": {"payload": payload_b64}})
        .to_string()
}

/// `{"event":"mark","streamSid":…,"mark":{"name":…}}`.
pub fn fleet_mark_json(stream_sid: &str, name: &str) -> String {
    serde_json::json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})
        .to_string()
}

/// `{"event":"clear","streamSid":…}`.
pub fn fleet_clear_json(stream_sid: &str) -> String {
    serde_json::json!({"event": "clear", "streamSid": stream_sid}).to_string()
}

/// Builds inbound `media` messages from a template: the same bytes as serde, one allocation,
/// no serializer. The stream SID is JSON-escaped once, when the encoder is made.
#[derive(Debug, Clone)]
pub struct MediaFrameEncoder {
    /// `","streamSid":"MZ…"}` — everything after the payload.
    suffix: String,
}

const MEDIA_PREFIX: &str = r#"{"event":"media","sequenceNumber":""#;
const MEDIA_AFTER_SEQUENCE: &str = r#"","media":{"track":"inbound","chunk":""#;
const MEDIA_AFTER_CHUNK: &str = r#"","timestamp":""#;
const MEDIA_AFTER_TIMESTAMP: &str = r#"","payload":""#;

impl MediaFrameEncoder {
    pub fn new(stream_sid: &str) -> Self {
        let escaped = serde_json::to_string(stream_sid).expect("a string serializes");
        MediaFrameEncoder {
            suffix: format!(r#""}},"streamSid":{escaped}}}"#),
        }
    }

    /// One `media` message. `payload_b64` must be base64 (no characters JSON escapes).
    pub fn encode(
        &mut self,
        sequence_number: u64,
        chunk: u64,
        timestamp_ms: u64,
        payload_b64: &str,
    ) -> String {
        let mut numbers = itoa::Buffer::new();
        let mut out = String::with_capacity(
            MEDIA_PREFIX.len()
                + MEDIA_AFTER_SEQUENCE.len()
                + MEDIA_AFTER_CHUNK.len()
                + MEDIA_AFTER_TIMESTAMP.len()
                + 3 * 20
                + payload_b64.len()
                + self.suffix.len(),
        );
        out.push_str(MEDIA_PREFIX);
        out.push_str(numbers.format(sequence_number));
        out.push_str(MEDIA_AFTER_SEQUENCE);
        out.push_str(numbers.format(chunk));
        out.push_str(MEDIA_AFTER_CHUNK);
        out.push_str(numbers.format(timestamp_ms));
        out.push_str(MEDIA_AFTER_TIMESTAMP);
        out.push_str(payload_b64);
        out.push_str(&self.suffix);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const MZ: &str = "MZ0123456789abcdef0123456789abcdef";
    const AC: &str = "AC0123456789abcdef0123456789abcdef";
    const CA: &str = "CA0123456789abcdef0123456789abcdef";

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn connected_has_no_stream_sid() {
        assert_eq!(
            value(&TwilioEvent::connected().to_json()),
            json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        );
    }

    #[test]
    fn start_matches_twilio() {
        let params = BTreeMap::from([("tenant".to_string(), "acme".to_string())]);
        let start = TwilioEvent::start(1, MZ, AC, CA, params);
        assert_eq!(
            value(&start.to_json()),
            json!({
                "event": "start",
                "sequenceNumber": "1",
                "start": {
                    "accountSid": AC, "streamSid": MZ, "callSid": CA,
                    "tracks": ["inbound"],
                    "customParameters": {"tenant": "acme"},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
                },
                "streamSid": MZ
            })
        );
    }

    #[test]
    fn mark_dtmf_stop_match_twilio() {
        assert_eq!(
            value(&TwilioEvent::mark(4, MZ, "greeting").to_json()),
            json!({"event": "mark", "sequenceNumber": "4", "streamSid": MZ, "mark": {"name": "greeting"}})
        );
        assert_eq!(
            value(&TwilioEvent::dtmf(5, MZ, '#').to_json()),
            json!({"event": "dtmf", "streamSid": MZ, "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "#"}})
        );
        assert_eq!(
            value(&TwilioEvent::stop(6, MZ, AC, CA).to_json()),
            json!({"event": "stop", "sequenceNumber": "6", "streamSid": MZ, "stop": {"accountSid": AC, "callSid": CA}})
        );
    }

    #[test]
    fn media_frame_encoder_is_byte_identical_to_serde() {
        let payload = "/".repeat(216);
        let mut encoder = MediaFrameEncoder::new(MZ);
        for (sequence, chunk) in [(2u64, 1u64), (3, 2), (1_000_001, 1_000_000)] {
            let event = TwilioEvent::Media {
                sequence_number: sequence.to_string(),
                media: MediaChunk {
                    track: "inbound".into(),
                    chunk: chunk.to_string(),
                    timestamp: ((chunk - 1) * 20).to_string(),
                    payload: payload.clone(),
                },
                stream_sid: MZ.into(),
            };
            let fast = encoder.encode(sequence, chunk, (chunk - 1) * 20, &payload);
            assert_eq!(fast, serde_json::to_string(&event).unwrap());
            assert_eq!(parse_twilio_event(&fast).unwrap(), event);
        }
        // Strings on the wire, not numbers.
        let fast = encoder.encode(2, 1, 0, &payload);
        let parsed = value(&fast);
        assert_eq!(parsed["sequenceNumber"], "2");
        assert_eq!(parsed["media"]["chunk"], "1");
        assert_eq!(parsed["media"]["timestamp"], "0");
    }

    #[test]
    fn inbound_media_payload_is_borrowed() {
        let mut encoder = MediaFrameEncoder::new(MZ);
        let frame = encoder.encode(2, 1, 0, "AAAA");
        let payload = inbound_media_payload(&frame).unwrap();
        assert_eq!(payload, "AAAA");
        assert!(matches!(payload, Cow::Borrowed(_)));
        assert_eq!(
            inbound_media_payload(&TwilioEvent::connected().to_json()),
            None
        );
        assert_eq!(inbound_media_payload("{garbage"), None);
        assert_eq!(inbound_media_payload(r#"{"event":"media"}"#), None);
    }

    #[test]
    fn events_round_trip() {
        let events = [
            TwilioEvent::connected(),
            TwilioEvent::start(1, MZ, AC, CA, BTreeMap::new()),
            TwilioEvent::mark(3, MZ, "m"),
            TwilioEvent::dtmf(4, MZ, '7'),
            TwilioEvent::stop(5, MZ, AC, CA),
        ];
        for event in events {
            assert_eq!(parse_twilio_event(&event.to_json()).unwrap(), event);
        }
    }

    #[test]
    fn fleet_messages_parse_and_borrow() {
        let media = fleet_media_json(MZ, "AAAA");
        assert_eq!(
            parse_fleet_message(&media).unwrap(),
            FleetMessage::Media {
                stream_sid: MZ.into(),
                payload: "AAAA".into()
            }
        );
        let FleetMessage::Media { payload, .. } = parse_fleet_message(&media).unwrap() else {
            panic!()
        };
        assert!(
            matches!(payload, Cow::Borrowed(_)),
            "payload is borrowed, not copied"
        );
        assert_eq!(
            parse_fleet_message(&fleet_mark_json(MZ, "a \"quoted\" name")).unwrap(),
            FleetMessage::Mark {
                stream_sid: MZ.into(),
                name: "a \"quoted\" name".into()
            }
        );
        assert_eq!(
            parse_fleet_message(&fleet_clear_json(MZ)).unwrap(),
            FleetMessage::Clear {
                stream_sid: MZ.into()
            }
        );
        // Extra fields are fine.
        let extra = format!(r#"{{"event":"clear","streamSid":"{MZ}","x":[1,2,{{}}]}}"#);
        assert!(parse_fleet_message(&extra).is_ok());
    }

    #[test]
    fn bad_fleet_messages_are_classified() {
        let kind = |text: &str| parse_fleet_message(text).unwrap_err().kind();
        assert_eq!(kind(""), "invalid_json");
        assert_eq!(kind("{not json"), "invalid_json");
        assert_eq!(kind("\u{0}\u{1}"), "invalid_json");
        assert_eq!(kind("[1,2,3]"), "unknown_event");
        assert_eq!(kind("42"), "unknown_event");
        assert_eq!(kind(r#"{"streamSid":"MZ"}"#), "unknown_event");
        assert_eq!(
            kind(r#"{"event":"dance","streamSid":"MZ"}"#),
            "unknown_event"
        );
        assert_eq!(kind(r#"{"event":7}"#), "unknown_event");
        assert_eq!(
            kind(r#"{"event":"media","streamSid":"MZ"}"#),
            "invalid_message"
        );
        assert_eq!(
            kind(r#"{"event":"media","streamSid":"MZ","media":{"payload":5}}"#),
            "invalid_message"
        );
        assert_eq!(
            kind(r#"{"event":"mark","streamSid":"MZ","mark":{}}"#),
            "invalid_message"
        );
        assert_eq!(kind(r#"{"event":"clear"}"#), "invalid_message");
        let deep = "[".repeat(100_000);
        assert_eq!(kind(&deep), "invalid_json");
        let huge_number = format!(
            r#"{{"event":"clear","streamSid":"MZ","n":1{}}}"#,
            "0".repeat(5000)
        );
        assert!(parse_fleet_message(&huge_number).is_ok());
    }

    #[test]
    fn bad_twilio_events_are_classified() {
        let kind = |text: &str| parse_twilio_event(text).unwrap_err().kind();
        assert_eq!(kind("nope"), "invalid_json");
        assert_eq!(kind(r#"{"event":"clear"}"#), "unknown_event");
        assert_eq!(
            kind(r#"{"event":"media","sequenceNumber":2}"#),
            "invalid_message"
        );
        assert_eq!(kind(&"{".repeat(50_000)), "invalid_json");
    }
}
