//! Integration tests: the harness against real servers on loopback (the sink, the reference
//! fleet, and small misbehaving fleets written here). One test binary, modules by subject.

mod chaos;
mod chaos_cli;
mod chaos_db;
mod cleanup;
mod cli;
mod embedded_target;
mod external_fleet;
mod fleet;
mod fleet_util;
mod function_length;
mod fuzz_corpus;
mod hostile_http;
mod indie_fleet;
mod indie_verdicts;
mod layers;
mod live_metrics;
mod metric_slos;
mod misbehaving_fleet;
mod observe;
mod report;
mod report_html;
mod safe_output;
mod schemas;
mod sink_calls;
mod standin_counts;
mod time_scale;
mod support {
    //! Test support shared with the library's unit tests.
    pub mod postgres;
}
mod util;
mod verdicts;
