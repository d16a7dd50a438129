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

/// What a caught panic says, for a `harness_error` record or the line on stderr: `it
/// panicked: MESSAGE`, or `it panicked` when its payload is not text.
pub fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .map_or_else(
            || "it panicked".to_owned(),
            |text| format!("it panicked: {text}"),
        )
}

/// Runs `command` and returns its exit code. A panic in it is a bug in voxsoak, never the
/// fleet's failure: [`HARNESS_ERROR`], with the reason written to `stderr` (a failed write
/// is ignored: stderr may be a closed pipe).
pub fn unless_panicked(command: impl FnOnce() -> i32, stderr: &mut dyn std::io::Write) -> i32 {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)) {
        Ok(code) => code,
        Err(payload) => {
            let _ = writeln!(
                stderr,
                "voxsoak: harness error, a bug in voxsoak ({}); exit {HARNESS_ERROR}",
                panic_reason(&*payload)
            );
            HARNESS_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_a_harness_error_with_its_reason_on_stderr() {
        let mut stderr = Vec::new();
        let code = unless_panicked(|| panic!("bucket {} out of range", 7), &mut stderr);
        assert_eq!(code, HARNESS_ERROR);
        let said = String::from_utf8(stderr).unwrap();
        assert!(
            said.contains("harness error") && said.contains("it panicked: bucket 7 out of range"),
            "{said}"
        );

        let mut stderr = Vec::new();
        let code = unless_panicked(|| std::panic::panic_any(42_u8), &mut stderr);
        assert_eq!(code, HARNESS_ERROR);
        assert!(String::from_utf8(stderr).unwrap().contains("(it panicked)"));
    }

    #[test]
    fn a_command_that_returns_keeps_its_code_and_says_nothing() {
        for code in [PASS, FAILED, HARNESS_ERROR] {
            let mut stderr = Vec::new();
            assert_eq!(unless_panicked(|| code, &mut stderr), code);
            assert!(stderr.is_empty());
        }
    }
}
