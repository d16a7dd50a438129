#!/usr/bin/env bash
# The soak benchmark: does the harness stay flat on a long run, how fast does its journal
# grow, and how long does `voxsoak report` take on it.
#
# Runs scenarios/autonomy-24h.toml's day (diurnal load, peak CALLS concurrent calls, the
# night trough a sixth of it) compressed SCALE times, samples the harness's RSS every 10 s,
# and prints:
#   - the harness's RSS slope after warm-up (least squares over the last 80% of the
#     samples), in MiB per hour of run time (the target: under 1 MiB/h);
#   - the journal's bytes per hour of run time;
#   - how long `voxsoak report` takes to re-grade the journal.
#
#   scripts/bench-soak.sh                          # 1 h (SCALE=24), 500 calls, the sink
#   TARGET=embedded CALLS=24 scripts/bench-soak.sh # the reference fleet, its faults on
#   SCALE=96 CALLS=200 scripts/bench-soak.sh       # 15 minutes
#   LOAD=flat scripts/bench-soak.sh                # CALLS calls all day long
#   KEEP=/tmp/soak scripts/bench-soak.sh           # keep the RSS samples and the run dir
#
# The diurnal day's load rises to its peak and falls, and the harness's RSS with it (its
# allocator keeps some of the peak's memory): a slope over it mixes load with leaks.
# LOAD=flat holds CALLS calls for the whole day (sink only), so any slope is growth.
#
# TARGET=sink (the default) measures the harness alone: `voxsoak sink` answers every call
# and the scenario has no faults (a sink has no TTS, database or temp dir to fault).
# TARGET=embedded runs the shipped scenario's faults against the reference fleet; on a
# small machine keep CALLS low (the fleet shares the cores). The 72-hour re-grade is
# measured by `cargo bench --bench report_72h`.
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${SCALE:-24}"
calls="${CALLS:-500}"
target="${TARGET:-sink}"
load="${LOAD:-diurnal}"
cargo build --release --quiet
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
base=$(( (calls + 2) / 3 ))
trough=$(( (calls + 5) / 6 ))
[ "$trough" -ge 1 ] || trough=1
scenario="$work/soak.toml"
stages="{ diurnal = \"24h\", base = $base, trough = $trough }"
[ "$load" = flat ] && stages="{ ramp_to = $calls, over = \"4m\" }, { hold = \"24h\" }"
if [ "$target" = sink ]; then
  cat > "$scenario" <<TOML
name = "bench-soak"
seed = 24
[target]
fleet = "sink"
reply_delay = "600ms"
[load]
stages = [$stages]
[calls]
turn_timeout = "10s"
fixtures = ["$PWD/fixtures/*.wav"]
[[scripts]]
name = "conversation"
turns = { min = 2, max = 3 }
[slo]
call_success = ">= 0%"
TOML
else
  sed -e "s|diurnal = \"24h\", base = [0-9]*, trough = [0-9]*|diurnal = \"24h\", base = $base, trough = $trough|" \
      -e "s|\"\\.\\./fixtures/\\*\\.wav\"|\"$PWD/fixtures/*.wav\"|" \
      scenarios/autonomy-24h.toml > "$scenario"
fi
out="$work/out"
echo "== autonomy day ($load load) at x$scale, peak $calls calls, against the $target"
./target/release/voxsoak run "$scenario" --time-scale "$scale" --out "$out" --quiet \
  > "$work/stdout" 2> "$work/stderr" &
harness=$!
start=$(date +%s)
: > "$work/rss"
while kill -0 "$harness" 2>/dev/null; do
  if rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$harness/status" 2>/dev/null) && [ -n "$rss" ]; then
    echo "$(( $(date +%s) - start )) $rss" >> "$work/rss"
  fi
  sleep 10
done
wait "$harness" || true
grep -E "^voxsoak|calls |harness " "$work/stdout" || cat "$work/stderr"
awk '
  { t[NR] = $1; r[NR] = $2 / 1024 }
  END {
    if (NR < 5) { print "   too few RSS samples for a slope"; exit }
    from = int(NR / 5) + 1
    for (i = from; i <= NR; i++) { n++; sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i] }
    slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    printf "   harness RSS: %.1f MiB at %ds, %.1f MiB at the end (%ds); slope after warm-up %.2f MiB per hour\n",
      r[from], t[from], r[NR], t[NR], slope * 3600
  }' "$work/rss"
bytes=$(stat -c %s "$out/journal.jsonl")
seconds=$(( $(date +%s) - start ))
awk -v b="$bytes" -v s="$seconds" 'BEGIN {
  printf "   journal: %.1f MB in %ds: %.2f MB per hour of run time\n", b / 1e6, s, b / 1e6 / (s / 3600) }'
# What the journal's bytes are: records and bytes per hour of run time, by event.
awk -v s="$seconds" '
  match($0, /"event":"[a-z_]*"/) { e = substr($0, RSTART + 9, RLENGTH - 10); n[e]++; b[e] += length($0) + 1 }
  END { for (e in n) printf "     %-22s %8d records %9.3f MB per hour\n", e, n[e], b[e] / 1e6 / (s / 3600) }
' "$out/journal.jsonl" | sort -k4 -nr
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP" && cp "$work/rss" "$work/stdout" "$work/stderr" "$KEEP/" && cp -r "$out" "$KEEP/out"
fi
report_start=$(date +%s.%N)
./target/release/voxsoak report "$out" > /dev/null || true
awk -v a="$report_start" -v b="$(date +%s.%N)" 'BEGIN { printf "   voxsoak report: %.2f s\n", b - a }'
