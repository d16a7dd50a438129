//! `junit.xml`: the run as JUnit test results, so GitHub, GitLab and Jenkins show it without
//! help. One suite of SLOs (one case each) and one suite of fault injections (one case
//! each). An SLO the fleet missed, or an injection it did not notice or recover from (or
//! not within `detect_within` or `recover_within`), is a `failure` whose message says what
//! and by how much; what the run could not measure or
//! carry out is an `error` (never the fleet's); an injection with nothing to grade is
//! `skipped`.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::story::{FaultStory, Problem};
use crate::escape::line as shown;
use crate::grade::summary::Summary;
use crate::grade::{SloStatus, SloVerdict};

/// The file in the run directory.
pub const JUNIT_XML: &str = "junit.xml";

/// The JUnit XML for `summary`.
pub fn render(summary: &Summary) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new(format!("voxsoak {}", shown(&summary.scenario)));
    report.set_time(Duration::from_secs_f64(summary.wall_s.max(0.0)));
    let mut slos = TestSuite::new("slos");
    slos.add_test_cases(summary.slos.iter().map(slo_case));
    let mut faults = TestSuite::new("faults");
    faults.add_test_cases(summary.faults.iter().map(|fault| {
        let story = FaultStory::of(fault);
        fault_case(&story)
    }));
    let mut run = TestSuite::new("run");
    run.add_test_case(run_case(summary));
    report.add_test_suites([run, slos, faults]);
    report.to_string()
}

/// The run itself: an error when it could not be carried out (or was aborted), so a
/// harness problem is never shown as green.
fn run_case(summary: &Summary) -> TestCase {
    use crate::grade::Verdict;
    let status = match summary.verdict {
        Verdict::Pass | Verdict::Fail => TestCaseStatus::success(),
        Verdict::Error | Verdict::Aborted => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(format!(
                "run {}: {}",
                verdict_word(summary),
                shown(summary.reason.as_deref().unwrap_or("no reason recorded"))
            ));
            status
        }
    };
    let mut case = TestCase::new("carried out", status);
    case.set_classname("voxsoak.run");
    case
}

fn verdict_word(summary: &Summary) -> &'static str {
    use crate::grade::Verdict;
    match summary.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Error => "error",
        Verdict::Aborted => "aborted",
    }
}

fn slo_case(slo: &SloVerdict) -> TestCase {
    let (threshold, why) = (shown(&slo.threshold), shown(&slo.why));
    let status = match slo.status {
        SloStatus::Pass => TestCaseStatus::success(),
        SloStatus::Fail => failure(
            NonSuccessKind::Failure,
            format!(
                "{}: measured {}, threshold {threshold}: {why}",
                shown(&slo.name),
                shown(&slo.measured)
            ),
        ),
        SloStatus::NotMeasured => failure(
            NonSuccessKind::Error,
            format!(
                "{} could not be measured (threshold {threshold}): {why}",
                shown(&slo.name)
            ),
        ),
    };
    let mut case = TestCase::new(shown(&slo.name).into_owned(), status);
    case.set_classname("voxsoak.slo");
    case
}

fn fault_case(story: &FaultStory) -> TestCase {
    let status = match &story.problem {
        None => TestCaseStatus::success(),
        Some(Problem::Fleet(message)) => failure(NonSuccessKind::Failure, message.clone()),
        Some(Problem::Harness(message)) => failure(NonSuccessKind::Error, message.clone()),
        Some(Problem::NotGraded(message)) => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(message.clone());
            status
        }
    };
    let mut case = TestCase::new(story.label.clone(), status);
    case.set_classname("voxsoak.fault");
    case.set_system_out(format!("{}: {}", story.window, story.outcome()));
    case
}

fn failure(kind: NonSuccessKind, message: String) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(kind);
    status.set_message(message);
    status
}
