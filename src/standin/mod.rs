//! OpenAI-compatible stand-ins for the services a voice agent depends on: an LLM
//! (`POST /v1/chat/completions`, plain and `stream: true` SSE, with tool calls) and a TTS
//! (`POST /v1/audio/speech`). They are real HTTP servers on loopback.
//!
//! Two users: the reference fleet starts them with no fault when it runs alone (no
//! `LLM_BASE_URL`/`TTS_BASE_URL`), and the chaos plane points a fleet at them and switches
//! faults on and off at run time through their control handles ([`llm::LlmControl`],
//! [`tts::TtsControl`]). Either way a fleet reaches them only over HTTP, as it would reach
//! the real services.
//!
//! [`openai`] holds the wire types both sides share (like `twilio` for Media Streams).

pub mod llm;
pub mod openai;
pub mod tts;

use std::net::SocketAddr;

/// A stand-in server that is running.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub address: SocketAddr,
}

impl Running {
    /// `http://ADDR/v1`, what a fleet takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }
}
