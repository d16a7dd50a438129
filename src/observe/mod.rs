//! Watching processes from the outside, the way an operator would.

pub mod process;
