//! The fleet's LLM client: OpenAI-compatible `POST {LLM_BASE_URL}/chat/completions` with
//! `stream: true`, assembled from its SSE body as it arrives.

use std::time::Duration;

use crate::standin::openai::{
    AssistantTurn, ChatMessage, ChatRequest, StreamAccumulator, StreamError, ToolSpec,
};

/// Longest a whole answer may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// An answer that takes longer than this is counted slow (`llm_slow_total`, which raises
/// `LlmDegraded`).
pub const SLOW: Duration = Duration::from_secs(3);
/// Largest answer body read; a bigger one is an error, not an allocation.
const MAX_ANSWER_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("answered HTTP {status}")]
    Status { status: u16 },
    #[error("bad stream: {0}")]
    Stream(#[from] StreamError),
    #[error("answer larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
}

impl LlmError {
    /// The `status` label of `llm_requests_total`.
    pub fn label(&self) -> String {
        match self {
            LlmError::Request(error) if error.is_timeout() => "timeout".into(),
            LlmError::Request(_) => "error".into(),
            LlmError::Status { status } => status.to_string(),
            LlmError::Stream(StreamError::Truncated) => "truncated".into(),
            LlmError::Stream(_) => "bad_stream".into(),
            LlmError::TooLarge => "too_large".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    url: String,
}

impl LlmClient {
    /// `base_url` such as `http://127.0.0.1:9000/v1`.
    pub fn new(http: reqwest::Client, base_url: &str) -> Self {
        LlmClient {
            http,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
        }
    }

    /// One streamed completion; `user` (the call SID) lets the provider tell calls apart.
    pub async fn complete(
        &self,
        messages: Vec<ChatMessage>,
        tools: Vec<ToolSpec>,
        user: &str,
    ) -> Result<AssistantTurn, LlmError> {
        let request = ChatRequest {
            model: "voxsoak-agent".into(),
            messages,
            tools,
            stream: true,
            user: Some(user.to_string()),
        };
        let mut response = self
            .http
            .post(&self.url)
            .timeout(TIMEOUT)
            .json(&request)
            .send()
            .await
            .map_err(LlmError::Request)?;
        let status = response.status();
        if !status.is_success() {
            return Err(LlmError::Status {
                status: status.as_u16(),
            });
        }
        let mut accumulator = StreamAccumulator::default();
        let mut read = 0usize;
        while let Some(chunk) = response.chunk().await.map_err(LlmError::Request)? {
            read += chunk.len();
            if read > MAX_ANSWER_BYTES {
                return Err(LlmError::TooLarge);
            }
            if accumulator.push(&chunk)? {
                break;
            }
        }
        Ok(accumulator.finish()?)
    }
}
