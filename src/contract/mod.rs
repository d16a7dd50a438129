//! Plain data the scenario model shares with the parts that carry it out: the reference
//! fleet's bugs and settings, what a stand-in is told to do wrong, how a database pool is
//! exhausted, the echo sink's turn-taking. It depends on nothing of the harness, so the
//! model (`crate::scenario`) can name these without importing what runs them.

pub mod db;
pub mod fleet;
pub mod sink;
pub mod standin;
