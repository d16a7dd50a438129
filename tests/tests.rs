//! Integration tests: the harness against real servers on loopback (the sink, and small
//! misbehaving fleets written here). One test binary, modules by subject.

mod cli;
mod fleet;
mod fleet_util;
mod misbehaving_fleet;
mod sink_calls;
mod util;
