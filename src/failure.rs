//! Why a request to the fleet (an HTTP probe, a webhook, a WebSocket handshake) got no
//! answer, in words a person can act on. Every part that talks to the fleet uses it, so it
//! sits below them all.

/// Why an HTTP request got no answer, from its error's whole source chain: reqwest's own
/// message ("error sending request") says nothing a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFailure {
    /// `connection refused`, or every cause in the chain, outermost first (secrets masked).
    pub detail: String,
    /// Nothing listened on the port: the server is down, not slow or broken.
    pub refused: bool,
}

impl RequestFailure {
    pub fn of(error: reqwest::Error) -> RequestFailure {
        Self::of_error(&error.without_url())
    }

    /// From any error and its causes (a WebSocket handshake's, a webhook's).
    pub fn of_error(error: &(dyn std::error::Error + 'static)) -> RequestFailure {
        let mut refused = false;
        let mut causes: Vec<String> = Vec::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = next {
            if cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            {
                refused = true;
            }
            let text = cause.to_string();
            // Some layers repeat their cause in their own message.
            if !causes.last().is_some_and(|outer| outer.contains(&text)) {
                causes.push(text);
            }
            next = cause.source();
        }
        RequestFailure {
            detail: if refused {
                "connection refused".to_owned()
            } else {
                // reqwest and tungstenite quote the URL, credentials and all.
                crate::redact::text(&causes.join(": ")).into_owned()
            },
            refused,
        }
    }
}
