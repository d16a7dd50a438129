//! Opening a call's media stream: optionally the voice webhook and its TwiML, then the
//! WebSocket handshake, signed as Twilio signs it.

use std::collections::BTreeMap;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::twilio::signature;
use crate::twilio::twiml::{self, TwimlError};
use crate::twilio::webhook::VoiceWebhook;

pub(crate) type MediaSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The kernel send buffer of a call's media connection (Linux doubles the value set, so
/// 64 KiB: about 5 s of caller audio). Left to itself the kernel grows it to 4 MiB once the
/// fleet stops reading, which is 5 minutes of audio queued per call before a write blocks:
/// a fleet that stopped reading would be seen (`send_stalled`) only minutes later, while the
/// kernel held megabytes for each such call.
pub const MEDIA_SEND_BUFFER: usize = 32 << 10;

/// The largest TwiML answer read. TwiML is a few hundred bytes; a fleet answering more
/// (a 1 GB body, an endless chunked one) is refused as soon as it passes this, never
/// buffered. A body that trickles in is cut by `[calls] connect_timeout`.
pub const MAX_TWIML: usize = 64 << 10;

/// Why a webhook's answer was not read.
#[derive(Debug)]
enum BodyError {
    Read(reqwest::Error),
    /// Over the limit: by its `Content-Length` (Some), or as it arrived.
    TooLarge(Option<u64>),
}

/// The body of `response` if it is at most `limit` bytes; reading stops at the first byte
/// past it.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<String, BodyError> {
    if let Some(length) = response
        .content_length()
        .filter(|&length| length > limit as u64)
    {
        return Err(BodyError::TooLarge(Some(length)));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Where calls go in. `Debug` masks the URL's credentials (it shows in `ResolvedTarget`'s).
#[derive(Clone)]
pub enum CallEndpoint {
    /// Connect straight to the fleet's Media Streams WebSocket.
    Stream {
        url: Url,
        custom_parameters: BTreeMap<String, String>,
    },
    /// POST the voice webhook first and follow the `<Connect><Stream>` in its TwiML.
    Webhook { url: Url },
}

impl std::fmt::Debug for CallEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallEndpoint::Stream {
                url,
                custom_parameters,
            } => f
                .debug_struct("Stream")
                .field("url", &crate::redact::url(url))
                .field("custom_parameters", &custom_parameters.keys())
                .finish(),
            CallEndpoint::Webhook { url } => f
                .debug_struct("Webhook")
                .field("url", &crate::redact::url(url))
                .finish(),
        }
    }
}

/// What went wrong, causes included: "connection refused" says the fleet is down, where
/// "error sending request" says nothing.
fn failure(error: &(dyn std::error::Error + 'static)) -> String {
    crate::failure::RequestFailure::of_error(error).detail
}

/// What a TwiML answer over [`MAX_TWIML`] is told as.
fn too_large(declared: Option<u64>) -> String {
    let limit = MAX_TWIML >> 10;
    match declared {
        Some(bytes) => {
            format!("a body of {bytes} bytes, over the {limit} KiB TwiML limit: refused unread")
        }
        None => format!("a body over the {limit} KiB TwiML limit: reading stopped there"),
    }
}

/// Why a call could not open its stream. URLs in it have their credentials masked
/// ([`crate::redact`]): the texts become failure examples in the journal and summary.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("voice webhook POST {url} failed: {}", failure(source))]
    Webhook {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("voice webhook {url} answered HTTP {status}")]
    WebhookStatus { url: String, status: u16 },
    #[error("voice webhook {url} answered {}", too_large(*declared))]
    TwimlTooLarge {
        url: String,
        /// The body's `Content-Length`, when it declared one.
        declared: Option<u64>,
    },
    #[error("voice webhook {url} answered TwiML voxsoak cannot follow: {source}")]
    Twiml {
        url: String,
        #[source]
        source: TwimlError,
    },
    #[error("stream URL {url} from TwiML is not a valid URL")]
    StreamUrl { url: String },
    #[error(
        "host {host:?} of {url} is not in allow_hosts; add it to [target] allow_hosts to allow it"
    )]
    HostNotAllowed { host: String, url: String },
    #[error("WebSocket handshake with {url} failed: {}", failure(&**source))]
    WebSocket {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
}

/// An open media stream and what the `start` message must carry.
#[derive(Debug)]
pub(crate) struct OpenStream {
    pub socket: MediaSocket,
    pub custom_parameters: BTreeMap<String, String>,
}

/// The parts of the call context connecting needs.
pub(crate) struct Connector<'a> {
    pub endpoint: &'a CallEndpoint,
    pub auth_token: Option<&'a str>,
    pub http: &'a reqwest::Client,
    pub ws_config: WebSocketConfig,
    pub host_allowed: &'a (dyn Fn(&str) -> bool + Send + Sync),
}

impl Connector<'_> {
    pub async fn open(&self, webhook: &VoiceWebhook) -> Result<OpenStream, ConnectError> {
        let (url, custom_parameters) = match self.endpoint {
            CallEndpoint::Stream {
                url,
                custom_parameters,
            } => (url.clone(), custom_parameters.clone()),
            CallEndpoint::Webhook { url } => self.post_webhook(url, webhook).await?,
        };
        let socket = self.handshake(&url).await?;
        Ok(OpenStream {
            socket,
            custom_parameters,
        })
    }

    async fn post_webhook(
        &self,
        url: &Url,
        webhook: &VoiceWebhook,
    ) -> Result<(Url, BTreeMap<String, String>), ConnectError> {
        let params = webhook.form_params();
        let mut request = self.http.post(url.as_str()).form(&params);
        if let Some(token) = self.auth_token {
            request = request.header(
                signature::HEADER,
                signature::compute(token, url.as_str(), &params),
            );
        }
        let webhook_error = |source| ConnectError::Webhook {
            url: crate::redact::url(url),
            source,
        };
        let response = request.send().await.map_err(webhook_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ConnectError::WebhookStatus {
                url: crate::redact::url(url),
                status: status.as_u16(),
            });
        }
        let body = read_limited(response, MAX_TWIML)
            .await
            .map_err(|error| match error {
                BodyError::Read(source) => webhook_error(source),
                BodyError::TooLarge(declared) => ConnectError::TwimlTooLarge {
                    url: crate::redact::url(url),
                    declared,
                },
            })?;
        let target = twiml::parse_connect_stream(&body).map_err(|source| ConnectError::Twiml {
            url: crate::redact::url(url),
            source,
        })?;
        let stream_url = Url::parse(&target.url).map_err(|_| ConnectError::StreamUrl {
            url: crate::redact::text(&target.url).into_owned(),
        })?;
        let host = stream_url.host_str().unwrap_or_default();
        if !(self.host_allowed)(host) {
            return Err(ConnectError::HostNotAllowed {
                host: host.to_string(),
                url: crate::redact::url(&stream_url),
            });
        }
        Ok((stream_url, target.parameters))
    }

    async fn handshake(&self, url: &Url) -> Result<MediaSocket, ConnectError> {
        let ws_error = |source| ConnectError::WebSocket {
            url: crate::redact::url(url),
            source: Box::new(source),
        };
        let mut request = url.as_str().into_client_request().map_err(ws_error)?;
        if let Some(token) = self.auth_token {
            let no_params: &[(String, String)] = &[];
            let signed = signature::compute(token, url.as_str(), no_params);
            if let Ok(value) = HeaderValue::from_str(&signed) {
                request.headers_mut().insert("x-twilio-signature", value);
            }
        }
        let (socket, _response) =
            tokio_tungstenite::connect_async_with_config(request, Some(self.ws_config), true)
                .await
                .map_err(ws_error)?;
        if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            // Best effort: a socket that refuses keeps the kernel's default.
            let _ = socket2::SockRef::from(tcp).set_send_buffer_size(MEDIA_SEND_BUFFER);
        }
        Ok(socket)
    }
}
