//! The built-in echo sink's turn-taking, which the scenario model checks `reply_delay`
//! against.

use std::time::Duration;

/// Silence after speech that ends a caller turn. Speakers pause up to about 350 ms at commas
/// and full stops inside one turn (so do the espeak-ng fixtures); a real agent's endpointing
/// waits longer than that, and so does the sink. Replies come `reply_delay` after the end of
/// speech, but never before this much silence was heard.
pub const END_OF_TURN: Duration = Duration::from_millis(500);

/// The sink's `reply_delay` when the scenario does not set one: from the end of the
/// caller's speech to the start of the reply.
pub const DEFAULT_REPLY_DELAY: Duration = Duration::from_millis(600);
