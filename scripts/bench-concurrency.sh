#!/usr/bin/env bash
# The concurrency benchmark: N concurrent calls against `voxsoak sink` (its own process,
# started by the harness) on this machine, for each N given (default: 1000 5000).
# Prints, per N, the harness's CPU, RSS per call and send-pacing jitter, from summary.json.
#
#   scripts/bench-concurrency.sh            # 1000 and 5000 calls
#   scripts/bench-concurrency.sh 200        # a quick look
#   HOLD=120s scripts/bench-concurrency.sh 5000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
hold="${HOLD:-60s}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 5000)
for n in "${counts[@]}"; do
  # Ramp at 100 new calls a second; long calls (20 turns, about 70 s) so the hold measures
  # steady concurrency rather than connection churn.
  ramp=$(( (n + 99) / 100 ))
  cat > "$work/bench-$n.toml" <<TOML
name = "bench-$n"
seed = 1
[target]
fleet = "sink"
reply_delay = "600ms"
[load]
stages = [{ ramp_to = $n, over = "${ramp}s" }, { hold = "$hold" }]
[calls]
turn_timeout = "10s"
fixtures = ["$PWD/fixtures/*.wav"]
[[scripts]]
name = "long"
turns = 20
[slo]
call_success = ">= 0%"
TOML
  echo "== $n concurrent calls (ramp ${ramp}s, hold $hold)"
  ./target/release/voxsoak run "$work/bench-$n.toml" --out "$work/out-$n" --quiet \
    | grep -E "^voxsoak|calls |harness|pacing|response" || true
  echo "   summary: $work/out-$n/summary.json (removed at exit; copy it to keep it)"
  grep -A 7 '"harness"' "$work/out-$n/summary.json" | sed 's/^/   /'
  grep -A 6 '"pacing_jitter_ms"' "$work/out-$n/summary.json" | sed 's/^/   /'
done
