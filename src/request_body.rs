//! Request bodies from peers the harness does not trust (a fleet posting alerts, a fleet
//! calling a stand-in): read to a limit and within a deadline, so a huge, endless or
//! trickling body costs a bounded amount of memory and time, and is refused with a reason.

use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::time::Instant;

/// How long a client has to send a whole request body to a harness server (the alert
/// receiver, the stand-ins), from when its headers arrived. Their real clients send a few
/// KiB at once; one still sending after this is a slowloris, and is refused.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a body was not read whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body did not arrive within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("the body could not be read: {0}")]
    Broken(String),
}

/// The body, if it is at most `limit` bytes and arrives within `within`. A declared
/// `Content-Length` over the limit is refused before anything is read; otherwise reading
/// stops at the first byte past it.
pub async fn read_within(
    declared: Option<u64>,
    body: Body,
    limit: usize,
    within: Duration,
) -> Result<Bytes, BodyError> {
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut whole = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| BodyError::Broken(error.to_string()))?;
            if whole.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            whole.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(whole))
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut(within)))
}

/// `body`, failing with [`BodyError::TimedOut`] if it has not ended `within` from now: an
/// extractor reading it (axum's `Bytes`) then refuses the request instead of waiting for
/// a client that never finishes.
pub fn with_deadline(body: Body, within: Duration) -> Body {
    let deadline = Instant::now() + within;
    let stream =
        futures_util::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
            let mut stream = stream?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
                Ok(Some(Err(error))) => Some((Err(BodyError::Broken(error.to_string())), None)),
                Ok(None) => None,
                Err(_) => Some((Err(BodyError::TimedOut(within)), None)),
            }
        });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trickle() -> Body {
        let stream = futures_util::stream::unfold(0u32, |sent| async move {
            if sent > 0 {
                std::future::pending::<()>().await;
            }
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"{")), sent + 1))
        });
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn a_body_is_read_to_its_limit_and_no_further() {
        let read = |body: &'static [u8], declared| {
            read_within(declared, Body::from(body), 4, Duration::from_secs(5))
        };
        assert_eq!(read(b"1234", None).await, Ok(Bytes::from_static(b"1234")));
        assert_eq!(
            read(b"12345", None).await,
            Err(BodyError::TooLarge { limit: 4 })
        );
        assert_eq!(
            read(b"", Some(1 << 30)).await,
            Err(BodyError::TooLarge { limit: 4 }),
            "refused by its Content-Length, before reading"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        assert_eq!(
            read_within(None, trickle(), 1 << 20, Duration::from_secs(5)).await,
            Err(BodyError::TimedOut(Duration::from_secs(5)))
        );
        let error = axum::body::to_bytes(with_deadline(trickle(), Duration::from_secs(5)), 1 << 20)
            .await
            .unwrap_err();
        assert!(
            std::error::Error::source(&error)
                .is_some_and(|source| source.to_string().contains("did not arrive within 5s")),
            "{error:?}"
        );
    }
}
