//! Per-frame hot paths: what every call does 50 times a second.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use voxsoak::audio::utterance::{Utterance, silence_frame_b64};
use voxsoak::audio::vad::VoiceActivity;
use voxsoak::twilio::messages::{
    MediaFrameEncoder, TwilioEvent, fleet_media_json, parse_fleet_message,
};
use voxsoak::twilio::mulaw;

const STREAM_SID: &str = "MZ0123456789abcdef0123456789abcdef";

fn frame_encoding(c: &mut Criterion) {
    let vad = VoiceActivity::default();
    let utterance = Utterance::synthetic("bench", 7, std::time::Duration::from_secs(2), &vad);
    let mut encoder = MediaFrameEncoder::new(STREAM_SID);
    let mut group = c.benchmark_group("media frame");
    group.bench_function("template encoder", |b| {
        let mut chunk = 0u64;
        b.iter(|| {
            chunk += 1;
            let index = (chunk as usize) % utterance.frame_count();
            black_box(encoder.encode(chunk + 1, chunk, chunk * 20, utterance.frame_b64(index)))
        })
    });
    group.bench_function("serde_json of the event", |b| {
        let payload = utterance.frame_b64(3).to_string();
        let mut chunk = 0u64;
        b.iter(|| {
            chunk += 1;
            let event = TwilioEvent::Media {
                sequence_number: (chunk + 1).to_string(),
                media: voxsoak::twilio::messages::MediaChunk {
                    track: "inbound".into(),
                    chunk: chunk.to_string(),
                    timestamp: (chunk * 20).to_string(),
                    payload: payload.clone(),
                },
                stream_sid: STREAM_SID.into(),
            };
            black_box(serde_json::to_string(&event).unwrap())
        })
    });
    group.finish();
}

fn message_parsing(c: &mut Criterion) {
    let reply = fleet_media_json(STREAM_SID, silence_frame_b64());
    c.bench_function("parse fleet media message", |b| {
        b.iter(|| black_box(parse_fleet_message(black_box(&reply)).is_ok()))
    });
}

fn voice_activity(c: &mut Criterion) {
    let vad = VoiceActivity::default();
    let frame: Vec<u8> = (0..160)
        .map(|i| mulaw::encode(((i * 997) % 20000) as i16 - 10000))
        .collect();
    c.bench_function("voice activity on one mu-law frame", |b| {
        b.iter(|| black_box(vad.is_voiced_mulaw(black_box(&frame))))
    });
    let pcm: Vec<i16> = (0..160)
        .map(|i| ((i * 997) % 20000) as i16 - 10000)
        .collect();
    c.bench_function("mu-law encode one frame", |b| {
        b.iter(|| black_box(mulaw::encode_all(black_box(&pcm))))
    });
}

criterion_group!(benches, frame_encoding, message_parsing, voice_activity);
criterion_main!(benches);
