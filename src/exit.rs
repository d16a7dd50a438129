//! Process exit codes: a public contract, so CI can tell "the fleet failed" from "the harness
//! broke".

/// Every SLO passed.
pub const PASS: i32 = 0;
/// What was tested failed. `run` and `report`: the run was carried out and at least one SLO
/// failed, so the fleet is at fault. `chaos`: the fault was injected and undone, but never
/// seen in effect (a fault that cannot be confirmed is never reported as a success).
pub const FAILED: i32 = 1;
/// The run could not be carried out: bad scenario, unreachable target, harness error.
pub const HARNESS_ERROR: i32 = 2;
