//! The voice webhook: the form Twilio POSTs to a fleet when a call comes in.

/// The parameters of an incoming-call webhook that voxsoak sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceWebhook {
    pub call_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    pub call_status: String,
    pub direction: String,
    pub api_version: String,
}

/// A webhook form that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the voice webhook has no {0} parameter")]
    Missing(&'static str),
}

impl VoiceWebhook {
    /// An inbound call that is ringing, as Twilio announces it.
    pub fn inbound(call_sid: &str, account_sid: &str, from: &str, to: &str) -> Self {
        VoiceWebhook {
            call_sid: call_sid.into(),
            account_sid: account_sid.into(),
            from: from.into(),
            to: to.into(),
            call_status: "ringing".into(),
            direction: "inbound".into(),
            api_version: "2010-04-01".into(),
        }
    }

    /// The form parameters, with Twilio's names.
    pub fn form_params(&self) -> Vec<(String, String)> {
        [
            ("CallSid", &self.call_sid),
            ("AccountSid", &self.account_sid),
            ("From", &self.from),
            ("To", &self.to),
            ("CallStatus", &self.call_status),
            ("Direction", &self.direction),
            ("ApiVersion", &self.api_version),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect()
    }

    /// Reads a webhook form (what a fleet receives).
    pub fn from_form(params: &[(String, String)]) -> Result<Self, WebhookError> {
        let get = |name: &'static str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let required = |name: &'static str| get(name).ok_or(WebhookError::Missing(name));
        Ok(VoiceWebhook {
            call_sid: required("CallSid")?,
            account_sid: required("AccountSid")?,
            from: get("From").unwrap_or_default(),
            to: get("To").unwrap_or_default(),
            call_status: get("CallStatus").unwrap_or_default(),
            direction: get("Direction").unwrap_or_default(),
            api_version: get("ApiVersion").unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_uses_twilio_names_and_round_trips() {
        let webhook = VoiceWebhook::inbound("CA1", "AC1", "+15005550006", "+15005550001");
        let params = webhook.form_params();
        let keys: Vec<&str> = params.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "CallSid",
                "AccountSid",
                "From",
                "To",
                "CallStatus",
                "Direction",
                "ApiVersion"
            ]
        );
        assert_eq!(params[4].1, "ringing");
        assert_eq!(params[6].1, "2010-04-01");
        assert_eq!(VoiceWebhook::from_form(&params).unwrap(), webhook);
    }

    #[test]
    fn a_form_without_call_sid_is_refused() {
        assert_eq!(
            VoiceWebhook::from_form(&[]),
            Err(WebhookError::Missing("CallSid"))
        );
    }
}

/// The fleet's side of the webhook and the stream handshake, shared by the fleets voxsoak
/// ships (`sink` and the reference fleet).
pub mod serve {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};

    use crate::twilio::{signature, twiml};

    /// The Host the client used, which is what Twilio signs (URLs are rebuilt from it).
    pub fn request_host(headers: &HeaderMap) -> &str {
        headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("127.0.0.1")
    }

    /// Whether the request carries a valid `X-Twilio-Signature` for `url` and `params`
    /// (none for the stream upgrade) under `token`.
    pub fn signed(
        headers: &HeaderMap,
        token: &str,
        url: &str,
        params: &[(String, String)],
    ) -> bool {
        let given = headers
            .get(signature::HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        signature::validate(token, url, params, given)
    }

    /// The TwiML answer to a voice webhook received on `host`: connect the call to
    /// `ws://HOST/stream`, passing its `CallSid` as a stream parameter.
    pub fn connect_answer(host: &str, params: &[(String, String)]) -> String {
        let call_sid = params
            .iter()
            .find(|(key, _)| key == "CallSid")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let parameters = BTreeMap::from([("CallSid".to_string(), call_sid)]);
        twiml::connect_stream(&format!("ws://{host}/stream"), &parameters)
    }

    /// Who may call, and where refusals are counted.
    #[derive(Debug, Clone, Copy)]
    pub struct Signing<'a> {
        /// When set, requests must carry a valid `X-Twilio-Signature` under it.
        pub token: Option<&'a str>,
        /// Counts the requests refused for their signature.
        pub rejected: &'a AtomicU64,
    }

    impl Signing<'_> {
        /// None when the request may go on; otherwise the 403 to answer (counted).
        pub fn refuse_unsigned(
            &self,
            headers: &HeaderMap,
            url: &str,
            params: &[(String, String)],
        ) -> Option<Response> {
            let token = self.token?;
            if signed(headers, token, url, params) {
                return None;
            }
            self.rejected.fetch_add(1, Ordering::Relaxed);
            Some((StatusCode::FORBIDDEN, "invalid X-Twilio-Signature\n").into_response())
        }

        /// `POST /voice`: TwiML that connects the call to this server's `/stream`, or the
        /// 403 for a request that is not signed.
        pub fn answer_voice(&self, headers: &HeaderMap, params: &[(String, String)]) -> Response {
            let host = request_host(headers);
            if let Some(refused) =
                self.refuse_unsigned(headers, &format!("http://{host}/voice"), params)
            {
                return refused;
            }
            let body = connect_answer(host, params);
            ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
        }

        /// `GET /stream`: the 403 for a handshake that is not signed (it has no params).
        pub fn refuse_stream(&self, headers: &HeaderMap) -> Option<Response> {
            let url = format!("ws://{}/stream", request_host(headers));
            self.refuse_unsigned(headers, &url, &[])
        }
    }
}
