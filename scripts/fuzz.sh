#!/usr/bin/env bash
# The cargo-fuzz targets in fuzz/ (README "Fuzzing"), each for SECONDS_PER_TARGET (default
# 60). Works on a stable toolchain: cargo-fuzz passes nightly-only flags to rustc, which
# RUSTC_BOOTSTRAP=1 lets through. Installs cargo-fuzz first when it is missing.
#
#   scripts/fuzz.sh                    # every target, 60 s each
#   scripts/fuzz.sh 600 journal twiml  # two targets, 10 minutes each
#   JOBS=2 scripts/fuzz.sh 600         # every target, two at a time
#
# The committed corpus (fuzz/corpus/<target>/) is only read: new inputs go to
# fuzz/work/corpus/<target>/ (see README "Fuzzing" for folding them in), each target's
# output to fuzz/work/logs/<target>.log, a crashing input to fuzz/artifacts/<target>/.
# Prints per target: executions, executions per second, coverage (edges), corpus size and
# ok or CRASHED; exits 1 when a target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
jobs="${JOBS:-1}"
export RUSTC_BOOTSTRAP=1
# Debug assertions and overflow checks on, as `cargo test` has them: an overflow is a
# crash, not a quietly wrong total.
fuzz_flags=(--fuzz-dir fuzz --debug-assertions)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked --quiet
fi
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

echo "== building the fuzz targets"
cargo fuzz build "${fuzz_flags[@]}"

mkdir -p fuzz/work/logs
run_target() {
    local target="$1" log="fuzz/work/logs/$1.log"
    mkdir -p "fuzz/work/corpus/$target" "fuzz/artifacts/$target"
    # Inputs slower than 10 s (the default is 20 minutes) are hangs.
    cargo fuzz run "${fuzz_flags[@]}" "$target" "fuzz/work/corpus/$target" "fuzz/corpus/$target" \
        -- -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1
}

report() {
    local target="$1" status="$2" elapsed="$3" log="fuzz/work/logs/$1.log"
    local execs rate coverage corpus
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    coverage="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
    corpus="$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -n 1 | cut -d' ' -f2)"
    local verdict=ok
    if [ "$status" -ne 0 ]; then
        verdict="CRASHED (see $log and fuzz/artifacts/$target/)"
    fi
    printf '%-18s %5ss  execs %-10s exec/s %-7s cov %-6s corpus %-12s %s\n' \
        "$target" "$elapsed" "${execs:-?}" "${rate:-?}" "${coverage:-?}" "${corpus:-?}" "$verdict"
}

echo "== fuzzing ${#targets[@]} target(s), ${seconds}s each, ${jobs} at a time"
crashed=0
declare -A running=() started=()
# Waits for one running target to end, and reports it with the seconds it ran.
collect() {
    local pid status=0
    wait -n -p pid "${!running[@]}" || status=$?
    report "${running[$pid]}" "$status" "$((SECONDS - started[$pid]))"
    unset "running[$pid]" "started[$pid]"
    [ "$status" -eq 0 ] || crashed=1
}
for target in "${targets[@]}"; do
    [ ${#running[@]} -lt "$jobs" ] || collect
    run_target "$target" &
    running[$!]="$target"
    started[$!]=$SECONDS
done
while [ ${#running[@]} -gt 0 ]; do
    collect
done
if [ "$crashed" -ne 0 ]; then
    echo "fuzz: a target crashed" >&2
    exit 1
fi
