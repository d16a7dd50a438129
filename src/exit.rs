//! Process exit codes: a public contract, so CI can tell "the fleet failed" from "the harness
//! broke".

/// Every SLO passed.
pub const PASS: i32 = 0;
/// The run was carried out and at least one SLO failed: the fleet is at fault.
pub const SLO_FAILED: i32 = 1;
/// The run could not be carried out: bad scenario, unreachable target, harness error.
pub const HARNESS_ERROR: i32 = 2;
