//! The Twilio side of a call: Media Streams messages, mu-law, webhook, signature, TwiML.

pub mod mulaw;
