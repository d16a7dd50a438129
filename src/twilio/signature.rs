//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + each parameter, sorted by key,
//! as key then value)). For a WebSocket upgrade there are no parameters: the URL alone.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The header Twilio signs requests with.
pub const HEADER: &str = "X-Twilio-Signature";

/// The signature Twilio would send for a request to `url` with form `params`.
pub fn compute<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (key, value) in sorted {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is right for this request, compared in constant time.
pub fn validate<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    let expected = compute(auth_token, url, params);
    let (a, b) = (expected.as_bytes(), signature.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
    }

    #[test]
    fn twilio_published_vector() {
        assert_eq!(
            compute("12345", URL, &params()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn order_of_parameters_does_not_matter() {
        let mut reversed = params();
        reversed.reverse();
        assert_eq!(
            compute("12345", URL, &reversed),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn validation_fails_on_any_change() {
        assert!(validate(
            "12345",
            URL,
            &params(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        let mut changed = params();
        changed[2] = ("Digits", "1235");
        assert!(!validate(
            "12345",
            URL,
            &changed,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!validate(
            "54321",
            URL,
            &params(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!validate(
            "12345",
            "https://mycompany.com/myapp.php",
            &params(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!validate("12345", URL, &params(), ""));
    }

    #[test]
    fn a_websocket_upgrade_signs_the_url_alone() {
        let none: &[(String, String)] = &[];
        let signature = compute("token", "wss://fleet.example/stream", none);
        assert!(validate(
            "token",
            "wss://fleet.example/stream",
            none,
            &signature
        ));
        assert!(!validate(
            "token",
            "wss://fleet.example/other",
            none,
            &signature
        ));
    }
}
