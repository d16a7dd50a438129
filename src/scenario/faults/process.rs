//! `process_stall` and `process_kill`: signals to a fleet the harness started (SIGSTOP
//! until the clear, or SIGKILL and a restart at the clear, as a supervisor would). One
//! family because both act on the fleet process, take no parameters and need a fleet the
//! harness can signal. The fault objects are the chaos plane's (chaos/process.rs).

use super::super::Target;
use super::super::validate::Validator;
use super::{ActsOn, DefaultDetection, FaultSpec, KindEntry, KindSpec, RecoverFrom};

const HELP: &str = "  process_stall, process_kill
      --pid N: SIGSTOP until the end (then SIGCONT), or SIGKILL (not restarted: the
      process's own supervisor must do that).
";

/// The quietest outage there is: sockets stay open, nothing answers.
pub const PROCESS_STALL: KindSpec = KindSpec {
    name: "process_stall",
    parameters: &[],
    required: &[],
    acts_on: ActsOn::FleetProcess,
    detection: DefaultDetection::Unhealthy,
    recover_from: RecoverFrom::Clear,
    heals_itself: false,
    validate: stall,
    chaos_help: HELP,
    example: "",
};

/// As an OOM killer or a node failure would: the fleet's supervisor is meant to bring it
/// back while the fault is on.
pub const PROCESS_KILL: KindSpec = KindSpec {
    name: "process_kill",
    heals_itself: true,
    validate: kill,
    ..PROCESS_STALL
};

fn stall(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    signalled(validator, entry).then_some(FaultSpec::ProcessStall)
}

fn kill(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    signalled(validator, entry).then_some(FaultSpec::ProcessKill)
}

/// Whether the harness can signal the fleet: it started it.
fn signalled(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> bool {
    if matches!(entry.context.target, Target::External(_)) {
        validator.error(
            entry.span.clone(),
            format!(
                "{} needs a fleet the harness started (fleet = \"embedded\" or \"sink\"); it cannot signal an external fleet",
                entry.kind
            ),
        );
        return false;
    }
    true
}

/// `voxsoak plan`'s line.
pub(super) fn describe(spec: &FaultSpec) -> String {
    if matches!(spec, FaultSpec::ProcessKill) {
        "SIGKILL to the fleet process; started again on the same port at the end".to_owned()
    } else {
        "SIGSTOP to the fleet process; SIGCONT at the end".to_owned()
    }
}
