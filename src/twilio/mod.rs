//! The Twilio side of a call, exactly as Twilio speaks it: Media Streams messages
//! ([`messages`]), G.711 mu-law ([`mulaw`]), SIDs ([`sid`]), the voice webhook ([`webhook`])
//! with its `X-Twilio-Signature` ([`signature`]), and TwiML `<Connect><Stream>` ([`twiml`]).
//! The harness and the fleets it ships (sink, reference fleet) share this module.

pub mod messages;
pub mod mulaw;
pub mod sid;
pub mod signature;
pub mod twiml;
pub mod webhook;
