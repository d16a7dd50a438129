//! Scenario files: TOML in, a validated [`Scenario`] out, and the plan text `voxsoak plan`
//! prints.
//!
//! Loading happens in two phases, so that every problem in a file can be reported at once
//! with its position. Before them, `compose` reads the files the scenario includes (see
//! "Composing scenarios" below) and lays their texts end to end; both phases work on that
//! one text, and each position is turned back into the file, line and column it was
//! written at.
//!
//! 1. `raw`: serde types that mirror the file. They reject unknown keys and wrong TOML types
//!    and keep the byte span of every value that phase 2 checks. serde stops at the first
//!    such error, so the document is deserialized again without the key or value each
//!    error was about until it goes through: every syntax error (one per line), unknown key
//!    and wrongly typed value is found. Bytes that are not UTF-8 are reported at their line
//!    and column before any of this.
//! 2. `validate`: turns the raw types into the model below, collecting *all* the problems
//!    it finds as [`Diagnostic`]s (`file:line:column: message`), together with the unknown
//!    keys of phase 1 (a wrongly typed value stops here: phase 2 would only call it
//!    missing). It also reads what the file names: every fixture is opened and decoded
//!    (see [`Fixture`]), and a path that exists but is the wrong kind is an error.
//!
//! What is valid but would make a run test less than the file says is a *warning*, not an
//! error: [`Scenario::warnings`] (a fault that starts after the run ends, or too close to
//! its end to be confirmed, is never injected). `validate`, `plan` and `run` print them as
//! `file:line:column: warning: message`; they never change an exit code.
//!
//! What a file names through environment variables (database URLs) is checked when the run
//! starts, not here: `crate::target::check_database_hosts`.
//!
//! Everything random about a run (synthetic utterances, which script a call follows, Poisson
//! arrivals) is derived from [`Scenario::seed`] alone, so the same file and seed always give
//! the same schedule, however calls are sharded or ordered.
//!
//! # File format
//!
//! The format is also a JSON Schema (draft 7), [`json_schema`], committed as
//! `schemas/scenario.schema.json` for editors (Taplo / Even Better TOML): it is generated
//! from the phase 1 types and the fault registry, so it takes the keys the parser takes.
//!
//! Durations are strings with units: `"300ms"`, `"5s"`, `"1.5s"`, `"2m18s"`, `"1h30m"`,
//! `"72h"` (also `us`, `min`, `d`; spaces between parts are allowed). Bare numbers and
//! negative values are errors. Unknown keys anywhere are errors.
//!
//! ```toml
//! include = ["fleet.toml"]          # optional: files merged under this one (relative to
//!                                   # it), see "Composing scenarios" below
//! name = "sink-baseline"            # optional, default: the file name without extension
//! description = "..."               # optional, shown by `voxsoak plan`
//! seed = 7                          # optional, default 1; `--seed` overrides it
//! time_scale = 96                   # optional, default 1 (real time), at most 10000: the
//!                                   # schedule (load stages, arrivals, fault at/for/every/
//!                                   # every_jitter) runs this many times faster; calls,
//!                                   # fault parameters and SLOs stay in real time.
//!                                   # `--time-scale` overrides it
//! report_every = "15m"              # optional, the default: rewrite the reports from the
//!                                   # journal this often during the run ("0s": only at
//!                                   # the end); `--report-every` overrides it
//! metrics_listen = "127.0.0.1:9464" # optional: serve the harness's own metrics (Prometheus
//!                                   # text, GET /metrics) there during the run; port 0: a
//!                                   # free one. Loopback only, unless [target] allow_hosts
//!                                   # names the address ("0.0.0.0" for every interface);
//!                                   # `--metrics-listen` overrides it
//!
//! [target]                          # required: exactly one of fleet, stream_url, webhook_url
//! fleet = "sink"                    # the harness starts `voxsoak sink` itself
//! reply_delay = "600ms"             # sink only, default 600ms: end of caller speech to the
//!                                   # sink's reply (never under its 500 ms end-of-turn silence)
//! reply_length = "800ms"            # sink only, default 800ms: length of each sink reply
//!
//! # ...or the reference fleet, which the harness starts itself (`voxsoak fleet`) on a free
//! # port of 127.0.0.1, with a temp dir for its SQLite file and TTS audio (removed after the
//! # run). The keys below are only allowed with fleet = "embedded"; these are the defaults.
//! # fleet = "embedded"
//! # bugs = []                       # production bugs to switch on, e.g. ["no-backoff"]:
//! #                                 # no-backoff, unvalidated-tool-params, temp-leak,
//! #                                 # long-transactions, no-healer, silent-stall;
//! #                                 # `voxsoak run --fleet-bug NAME` adds more
//! # database_url_env = "DATABASE_URL"  # NAME of the env var holding a postgres:// URL;
//! #                                 # never the URL itself. Default: a SQLite file in the
//! #                                 # run's temp dir. Its host (and any host= in its
//! #                                 # query, else PGHOST) must be in allow_hosts: checked
//! #                                 # when the run starts, before anything is started
//! #                                 # (`validate` checks it when the variable is set)
//! # db_pool_size = 10               # 1..=1000 connections in the fleet's database pool
//! # orders = 1000000                # 1..=50000000 rows seeded into `orders` before it listens
//! # workers = 8                     # 1..=1000 workers serving agent turns
//! # stall_after = "5s"              # the healer restarts a worker silent for this long
//! # stall_after_calls = 20          # >= 1; with bugs = ["silent-stall"]: jobs before a
//! #                                 # worker stalls
//! # memory_limit = "512MiB"         # default none; >= 16MiB: the fleet SIGKILLs itself
//! #                                 # above this RSS, like an OOM-killed pod
//! # temp_dir_budget = "256MiB"      # temp dir size above which /health is 503
//!
//! # ...or an external fleet (one of the two):
//! # stream_url = "ws://127.0.0.1:8080/stream"   # ws:// or wss://, connected to directly
//! # webhook_url = "http://127.0.0.1:8080/voice" # http:// or https://; the harness POSTs the
//! #                                             # voice webhook and follows <Connect><Stream>
//! # auth_token_env = "TWILIO_AUTH_TOKEN"  # NAME of the env var holding the auth token used
//! #                                       # to sign requests; never the secret itself
//! # custom_parameters = { tenant = "acme" }  # stream_url only: start.customParameters
//! allow_hosts = ["127.0.0.1", "localhost", "::1"]  # default: loopback only; the host of
//!                                   # stream_url / webhook_url (and of the stream URL a
//!                                   # webhook answers with) must be listed here
//!
//! [load]                            # required: exactly one of `stages` or `calls_per_minute`
//! stages = [                        # closed model: target concurrency over time, from 0
//!   { ramp_to = 50, over = "5s" },  # linear ramp from the previous level to 50
//!   { hold = "20s" },               # keep the previous level
//!   { ramp_to = 0, over = "5s" },
//! ]
//! # Shaped stages expand into ramps (see `voxsoak plan`):
//! #   { diurnal = "24h", base = 20 }   # a day from midnight: night trough (default a
//! #                                    # quarter of base, >= 1) to 05:00, base by 07:00,
//! #                                    # morning peak (default 3x base) 08:00-10:00, base
//! #                                    # 11:00-18:00, down to the trough by midnight;
//! #                                    # optional peak = N, trough = N; longer repeats the day
//! #   { spike_to = 60, for = "10m" }   # jump to 60, hold, come back to the level before
//! # ...or the open model:
//! # calls_per_minute = 120.0        # > 0
//! # duration = "5m"                 # required with calls_per_minute
//! # arrivals = "poisson"            # or "uniform" (default)
//! # max_concurrent = 1000           # default 10000; calls over the cap are dropped (counted),
//! #                                 # never delayed
//!
//! [calls]                           # optional; these are the defaults
//! connect_timeout = "5s"
//! turn_timeout = "10s"              # max wait for the agent to START replying
//! reply_silence = "1.5s"            # a reply is over after this much silence (or a mark)
//! wait_for_greeting = false         # listen for the agent's greeting before the first step
//! max_call_duration = "10m"         # hard stop per call
//! fleet_may_hang_up = "never"       # when a WebSocket close from the fleet ends a call
//!                                   # well: "never" (every close before the script ends
//!                                   # is fleet_hung_up), "after_last_turn" (a close once
//!                                   # every turn of the script got its answer is
//!                                   # completed) or "any" (any close by the fleet is
//!                                   # completed: fleets that hang up by design, such as
//!                                   # Twilio's samples that close after N echoes). A close
//!                                   # with code 1000, no code or 4000-4999 counts; a
//!                                   # dropped connection or an error code (1001 going
//!                                   # away, 1011 internal error, ...) never does
//! fixtures = []                     # WAV files: paths or globs relative to THIS file's
//!                                   # directory, e.g. ["../fixtures/*.wav"]; none: synthetic
//!                                   # speech only. Each is decoded at validation: at most
//!                                   # 50 MiB and 60 s each, 10 min of audio together
//! synthetic = { count = 8, min = "1s", max = "2.5s" }  # seeded synthetic utterances
//! from = "+15005550006"
//! to = "+15005550001"
//!
//! [[scripts]]                       # optional; default: one script "conversation", turns 2..=3
//! name = "conversation"             # required, unique
//! weight = 3                        # default 1, >= 1: relative share of calls
//! turns = { min = 2, max = 4 }      # or `turns = 3`; a turn = say "random", then listen
//!
//! [[scripts]]
//! name = "menu"
//! steps = [                         # `turns` or `steps`, not both
//!   { say = "order-status" },       # a fixture by file stem, "random" or "synthetic";
//!                                   # listens afterwards unless listen = false
//!   { dtmf = "1234#" },             # digits 0-9 * # A-D; listens unless listen = false
//!   { pause = "2s" },               # the caller stays silent
//!   { say = "random", listen = false },
//!   { hangup = true },              # the caller hangs up (else: after the last step)
//! ]
//!
//! [slo]                             # optional; default: call_success = ">= 99%"
//! call_success = ">= 99.5%"         # always checked; ">= 0%" switches it off
//! response_p95 = "<= 1500ms"        # end of caller speech -> first agent audio
//! response_p99 = "<= 3s"
//! first_audio_p95 = "<= 2s"         # connect -> first agent audio
//! pacing_jitter_p99 = "<= 5ms"      # the harness's own media pacing
//! detect_within = "2m18s"           # every injected fault detected within this
//! no_retry_storm = true             # TTS retries back off or jitter; Retry-After honoured
//! recover_within = "5m"             # every fault recovered from within this: from its
//!                                   # clear (or injection, see recover_from) until the
//!                                   # steady state holds for stable_window
//! stable_window = "20s"             # steady state: health 2xx, calls ending then meet
//!                                   # call_success, response p95 meets response_p95
//! uptime = ">= 99.7%"               # healthy share of probed time outside fault windows
//! memory_growth = "<= 50MiB/h"      # fleet RSS slope after warm-up (a fifth, <= 5 min)
//! temp_dir_growth = "<= 10MiB/h"    # the fleet's temp-dir bytes, the harness's own
//!                                   # leaked files left out
//! max_crashes = 0                   # exits the harness did not cause (a fleet it starts,
//!                                   # or [observe] process)
//! no_unprovoked_alerts = true       # no alert fires with no fault in effect (a clear's
//!                                   # stable_window still counts as the fault's)
//!
//! [[slo.metric]]                    # optional, repeatable: an SLO on the fleet's own
//!                                   # series (see [`metric_slo`])
//! name = "dlq"                      # required, unique; letters, digits, _ - . (at most
//!                                   # 64); not a built-in SLO's name or an [slo] key
//! series = "dead_letters"           # required: a series as `record` takes it (samples
//!                                   # whose labels include the selector's are summed)
//! max = 100                         # most value at any journaled sample
//! min = 1                           # least value after the warm-up (a fifth of the run,
//!                                   # at most 5 min)...
//! during = "spike"                  # ...or only inside the load's spike stages
//! growth_per_h = 50                 # most least-squares growth per hour after warm-up
//! rate_max = 2.0                    # most rise per second over `window` (counters: a
//!                                   # fall is a reset)
//! window = "1m"                     # with rate_max; default 1m, at least 20s
//!                                   # At least one of max, min, growth_per_h, rate_max.
//!
//! [[faults]]                        # optional, repeatable: see the README's chaos table
//! recover_from = "clear"            # or "injection": a fault the fleet must shrug off
//!                                   # while it lasts (default for *_tool_params)
//! kind = "db_pool_exhaustion"       # tts_429 tts_error tts_slow tts_timeout
//!                                   # empty_tool_params malformed_tool_params
//!                                   # llm_truncated_stream llm_slow llm_error
//!                                   # db_pool_exhaustion temp_file_leak proxy
//!                                   # process_stall process_kill
//! name = "pool"                     # default: the kind (numbered when it repeats); unique
//! at = "3m"                         # default 0s
//! for = "1m"                        # required, > 0
//! every = "2h"                      # optional; every > for + 2 × every_jitter + 1s
//! every_jitter = "10m"
//! detect = { alert = "DbPoolSaturated" }  # or { health = "unhealthy" },
//!                                   # { metric = "a / b > 0.95" }, { log = "re", file = "…" },
//!                                   # or a list; default per kind
//! method = "hold_locks"             # kind parameters; a kind refuses the others'
//! holders = 3
//! # temp_file_leak takes file_size = "1MiB" (at most 1GiB), rate = "4MiB/s",
//! # max_total = "1GiB" (over 10GiB only with [chaos] allow_large_leaks), dir (see the
//! # rules below) and min_free = "5%" or "2GiB" (free space it leaves on the dir's
//! # filesystem; default 5% or 2GiB, whichever is larger)
//!
//! [chaos]                           # optional
//! tts_listen = "127.0.0.1:9100"     # loopback only; required for stand-in faults against an
//! llm_listen = "127.0.0.1:9101"     # external fleet (which must be pointed there). When set,
//!                                   # the stand-ins serve there for the whole run, faults or
//!                                   # not
//! confirm_within = "15s"
//! writable_dirs = ["/var/tmp/fleet-audio"]  # dirs a temp_file_leak may write into (or
//!                                   # below), besides the fleet's temp dir; never a
//!                                   # system directory
//! allow_large_leaks = false         # true: a leak's max_total may be over 10GiB
//!
//! [abort]                           # optional
//! call_success_below = "50%"        # over the last `over` (default 60s), with at least
//! over = "60s"                      # `min_calls` (default 10) ended calls in it
//! kill_switch_file = "ABORT"        # default; relative to the run directory
//! kill_switch_listen = "127.0.0.1:9911"  # POST /abort; loopback only
//!
//! [observe]                         # optional: how the observers watch the fleet. Defaults
//!                                   # are the embedded fleet's; an external fleet is only
//!                                   # watched where this table says
//! health_url = "http://127.0.0.1:8080/health"    # GET; 2xx is healthy. Default: the
//!                                   # embedded fleet's /health, none for an external fleet
//! health_interval = "1s"            # default 1s, at least 100ms
//! health_timeout = "2s"             # default 2s: no answer in time is unhealthy
//! metrics_url = "http://127.0.0.1:8080/metrics"  # Prometheus text; default: the embedded
//!                                   # fleet's /metrics, none for an external fleet
//! scrape_interval = "2s"            # default 2s, at least 100ms
//! record = ["db_pool_in_use", 'tts_requests_total{status="429"}']  # series journaled in
//!                                   # one `metrics` record at most every 10 s (null when
//!                                   # absent); a series sums every sample whose labels
//!                                   # include the selector's
//! alerts_listen = "127.0.0.1:9093"  # external fleets only, loopback only: where the alert
//!                                   # receiver listens (point the fleet's Alertmanager
//!                                   # webhook at http://127.0.0.1:9093/alerts). The embedded
//!                                   # fleet's receiver is on a free port, wired by the harness
//! temp_dir = "/var/tmp/fleet-audio" # walked every temp_dir_interval (recursively, at most
//!                                   # 100,000 entries, symlinks not followed, the harness's
//!                                   # own leaked files left out); default: the embedded
//!                                   # fleet's audio temp dir
//! temp_dir_interval = "10s"         # default 10s, at least 1s
//! log_file = "/var/log/fleet.log"   # read like `tail -F` by { log = "…" } detect rules that
//!                                   # name no file; default: the embedded fleet's stdout and
//!                                   # stderr (kept in the run directory's fleet.log)
//! rss_metric = 'mem_bytes{kind="rss"}'  # the series /metrics gives the fleet's resident
//!                                   # memory in (a selector as in `record`); default
//!                                   # process_resident_memory_bytes
//! temp_dir_metric = "myfleet_tmp_bytes" # the series for its temp dir's bytes; default
//!                                   # temp_dir_bytes
//! process = { pid_file = "/run/fleet.pid" }  # external fleets only: the process the file
//!                                   # names (read every second) is sampled from /proc (RSS,
//!                                   # CPU); its exit is a crash, a new pid a restart
//! # process = { health = true }     # ...or: health_url refusing connections after it
//!                                   # answered is a crash, answering again a restart
//! ```
//!
//! Rules the example does not show:
//! - `say = "random"` picks a random fixture, or a synthetic utterance when there are no
//!   fixtures; `say = "synthetic"` always picks from the synthetic pool. A fixture whose
//!   stem is `random` or `synthetic` can only be reached through `"random"`. Two fixtures
//!   with the same stem can't be named in `say` (error: ambiguous).
//! - Fixture globs are resolved at load time; the resulting list is sorted and
//!   de-duplicated; a glob that matches no file is an error. Every fixture is then decoded
//!   (any PCM or float WAV up to 192 kHz, any channel count) and kept in the scenario, so a
//!   run plays exactly what validation read and never fails on a fixture later. A file
//!   that is not a WAV, a directory, or over a limit ([`crate::audio::wav::FixtureLimits`]:
//!   50 MiB on disk or claimed by its header, 60 s of audio; 10 minutes for all of a
//!   scenario's fixtures, which stay in memory for the run) is an error at its entry,
//!   naming the file and the limit. Sizes are checked before a sample is read.
//! - `hangup = true` must be the last step; `listen` is only allowed on `say` and `dtmf`.
//! - `reply_delay`/`reply_length` are only allowed with `fleet = "sink"`; `bugs`,
//!   `database_url_env`, `db_pool_size`, `orders`, `workers`, `stall_after`,
//!   `stall_after_calls`, `memory_limit` and `temp_dir_budget` only with
//!   `fleet = "embedded"`; `auth_token_env`/`custom_parameters` only with an external
//!   target, and `custom_parameters` only with `stream_url` (with `webhook_url` the
//!   fleet's TwiML `<Parameter>`s are used).
//! - `duration`, `arrivals`, `max_concurrent` are only allowed with `calls_per_minute`.
//! - Sizes are strings with units: `"512MiB"`, `"1GiB"` (powers of 1024), `"1.5GB"` (powers
//!   of 1000); see [`crate::units::parse_byte_size`]. Bare numbers are errors.
//! - The embedded fleet always listens on 127.0.0.1, whatever `allow_hosts` says; calls go
//!   to its `ws://127.0.0.1:PORT/stream`.
//! - Fault rules: `take_slots` needs PostgreSQL; process faults need a fleet the harness
//!   started; a proxy in front of a `host:port` needs `listen` and the host in
//!   `allow_hosts`; `db_pool_exhaustion` against an external fleet needs
//!   `database_url_env`.
//! - `temp_file_leak` writes into the embedded fleet's own `AUDIO_TMP_DIR` when it names no
//!   `dir`; otherwise into `dir` (default for an external fleet: `[observe] temp_dir`),
//!   which must be `[observe] temp_dir`, a `[chaos] writable_dirs` entry, or below one of
//!   them, and no system directory (see [`writable`]), once `..` and symlinks are resolved.
//!   Relative paths are relative to the directory voxsoak runs in; a dir that does not
//!   exist yet is resolved as far as it exists. Its size caps: `file_size` at most 1GiB and
//!   no more than `max_total`; `max_total` at most 10GiB and 100,000 files unless
//!   `allow_large_leaks = true`.
//! - `[observe]`: `health_url` and `metrics_url` are `http://` URLs whose host must be in
//!   `allow_hosts`. A fleet the harness starts (embedded or sink) is probed at its own
//!   `/health` and `/metrics` and its process watched by default; against an external fleet,
//!   `health_interval`/`health_timeout` need `health_url`, and `scrape_interval`, `record`,
//!   `rss_metric` and `temp_dir_metric` need `metrics_url`. `temp_dir_interval` needs
//!   `temp_dir` unless the fleet is embedded. `process` is for external fleets only, takes
//!   one of `pid_file` or `health = true`, and `health = true` needs `health_url`. Paths
//!   (`temp_dir`, `log_file`, `pid_file`, a detect rule's `file`) are used as written: a
//!   relative one is relative to the directory voxsoak runs in. They need not exist yet
//!   (the fleet creates them), but one that exists must be of the right kind: a directory
//!   given as `log_file`, `pid_file` or a rule's `file` is an error ("is a directory"), as
//!   is a `temp_dir` that is not a directory.
//! - An SLO nobody can measure is an error at its key. Against an external fleet:
//!   `max_crashes` needs `[observe] process`; `uptime` needs `health_url`; `memory_growth`
//!   needs `process = { pid_file }` or `metrics_url` (read through `rss_metric`);
//!   `temp_dir_growth` needs `temp_dir` or `metrics_url` (`temp_dir_metric`);
//!   `no_retry_storm` needs `[chaos] tts_listen`. The sink has a process, `/health` and
//!   `/metrics`, but no temp dir (`temp_dir_growth` needs `temp_dir` or `metrics_url`)
//!   and no TTS (`no_retry_storm` is refused). The embedded fleet measures them all.
//! - Against an external fleet, a fault whose `detect` rules (or its kind's default rule)
//!   include `health = "unhealthy"` needs `[observe] health_url`, and one with
//!   `{ metric = "…" }` needs `metrics_url`. A `{ log = "…" }` rule with no `file` needs
//!   `[observe] log_file` unless the fleet is embedded.
//! - SLO thresholds may omit the operator (`"99.5%"`, `"1500ms"`), but a wrong direction
//!   (`"<= 99%"` for call_success) is an error.
//! - `[[slo.metric]]`: `min` may not be over `max`; `during` needs `min` and a spike stage
//!   in `[load] stages`; `window` needs `rate_max` and must be at least two journaled
//!   samples (20s) and two `scrape_interval`s long; against an external fleet it needs
//!   `[observe] metrics_url`. Its series is journaled with the `record` series (a `metrics`
//!   record at most every 10 s), and graded in real time as memory_growth is: growth per
//!   hour and rates per second of the run's real time, whatever `time_scale` is. A series
//!   the fleet never exposes is `not measured` at the end (the verdict `error`), never a
//!   validation error: the file cannot know the fleet's page.
//!
//! # Composing scenarios
//!
//! A team keeps one description of its fleet and many soaks against it: a top-level
//! `include = ["fleet.toml", ...]` merges those files under the one that names them.
//!
//! ```toml
//! # nightly.toml
//! include = ["fleet-embedded.toml"] # [target], [observe], [chaos], shared [[faults]]...
//! [load]
//! stages = [{ ramp_to = 20, over = "1m" }, { hold = "2h" }]
//! [[faults]]                        # added after the fleet file's faults
//! kind = "tts_429"
//! for = "1m"
//! ```
//!
//! - Paths are relative to the file that names them (absolute ones are used as written);
//!   an included file may include others. Each file is merged once, where it is first met
//!   (two files may both include the fleet file). A file that includes itself, directly or
//!   through others, is an error at the entry that closes the circle, naming the chain
//!   (`include cycle: soak.toml includes a.toml includes soak.toml`); so is nesting deeper
//!   than [`MAX_INCLUDE_DEPTH`] (8), more than [`MAX_FILES`] (64) files, and an included
//!   file that is not a regular file or is over [`MAX_INCLUDED_BYTES`] (4 MiB). A file that
//!   cannot be read is an error at its `include` entry, in the file that names it.
//! - How files merge: the included files in their order, then the including file; a later
//!   one wins. Tables (`[target]`, `[calls]`, `[slo]`, inline tables such as `synthetic`)
//!   merge key by key; `[[faults]]`, `[[scripts]]` and `[[slo.metric]]` entries are
//!   appended, the included files' first ([`APPENDED`]); every other value, a scalar or an
//!   array such as `stages`, `fixtures` or `allow_hosts`, is replaced whole by the
//!   including file's. So two files that each set a different one of a pair that excludes
//!   the other (`stages` and `calls_per_minute`, `fleet` and `stream_url`) make an invalid
//!   scenario, reported as any other.
//! - The result is checked as one scenario: every key and rule above applies to it, and
//!   each problem is reported at the file, line and column it was written at
//!   (`fleet.toml:4:1: unknown field ...`), with every limit (faults, fixtures' audio,
//!   series recorded) counted over all files. Only the top level's `include` counts (in a
//!   table it is an unknown key), and a file need not be a whole scenario: `[target]` and
//!   `[load]` may come from any of them.
//! - A relative fixture path or glob is relative to the directory of the file it is written
//!   in, so a fleet file in `shared/` can say `fixtures = ["audio/*.wav"]` whoever
//!   includes it. The other paths keep their rules (relative to where voxsoak runs, or to
//!   the run directory), as in a single file.
//! - `voxsoak plan` names the files a scenario was composed of ([`Scenario::includes`]);
//!   `voxsoak run` records them in `run_started` (`scenario_files`) and writes the
//!   composed scenario to the run directory as `scenario.toml` (see `crate::run`).

mod compose;
mod error;
pub mod faults;
pub mod load_shapes;
pub mod metric_slo;
pub mod observe;
mod raw;
mod schedule;
mod schema;
mod validate;
pub mod writable;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_include;
#[cfg(test)]
mod tests_leak;
#[cfg(test)]
mod tests_metric_slo;
#[cfg(test)]
mod tests_observe;
#[cfg(test)]
mod tests_time;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use compose::{APPENDED, MAX_FILES, MAX_INCLUDE_DEPTH, MAX_INCLUDED_BYTES};
pub use error::{Diagnostic, ScenarioError, Warnings};
pub use faults::describe_leak;
pub use faults::{
    AbortConditions, ChaosSettings, DetectionRule, FaultKind, FaultSpec, ScheduledFault,
};
pub use metric_slo::{MetricSlo, MinDuring};
pub use observe::ObserveSettings;
pub use schedule::{ArrivalOffsets, CallChoice, PlannedStep, UtteranceSource};
pub use schema::json_schema;

/// The hosts a target may live on when the scenario does not say otherwise: the harness
/// must never load-test someone else's machine by accident.
pub const DEFAULT_ALLOW_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// Reads and validates the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(&bytes, path)
}

/// Validates a scenario file's bytes as [`load`] read them: bytes that are not UTF-8 are
/// reported at their line and column, then [`parse`] does the rest. (The fuzz target
/// `scenario` comes in here, so it takes the path `load` takes.)
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Scenario, ScenarioError> {
    let source = std::str::from_utf8(bytes).map_err(|_| ScenarioError::Invalid {
        path: path.to_path_buf(),
        diagnostics: error::not_utf8(bytes),
    })?;
    parse(source, path)
}

/// Validates scenario `source`; `path` names the file in diagnostics and is the base for
/// relative fixture paths and includes. The files it includes are read from disk.
pub fn parse(source: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let invalid = |diagnostics| ScenarioError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    };
    let sources = compose::gather(source, path).map_err(invalid)?;
    let located = |mut diagnostics: Vec<Diagnostic>| {
        diagnostics.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
        let diagnostics = diagnostics
            .into_iter()
            .map(|diagnostic| sources.locate(diagnostic))
            .collect();
        invalid(diagnostics)
    };
    let document = sources.document().map_err(located)?;
    let composed = (sources.files.len() > 1)
        .then(|| {
            serde::Deserialize::deserialize(toml::de::Deserializer::from(document.clone())).ok()
        })
        .flatten();
    let (raw, mut unknown_keys, tables) = match raw::parse(&sources.text, document) {
        raw::Parsed::Raw {
            raw,
            unknown_keys,
            tables_with_unknown_keys,
        } => (raw, unknown_keys, tables_with_unknown_keys),
        raw::Parsed::Invalid(diagnostics) => return Err(located(diagnostics)),
    };
    let mut diagnostics = match validate::validate(*raw, &sources, path) {
        Ok(scenario) if unknown_keys.is_empty() => {
            return Ok(Scenario {
                composed,
                ..scenario
            });
        }
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics,
    };
    diagnostics.retain(|found| {
        !tables
            .iter()
            .any(|table| (table.line, table.column) == (found.line, found.column))
    });
    diagnostics.append(&mut unknown_keys);
    Err(located(diagnostics))
}

/// `report_every` by default.
pub const DEFAULT_REPORT_EVERY: Duration = Duration::from_secs(15 * 60);

/// The most a schedule can be compressed: a week of schedule in about a minute.
pub const MAX_TIME_SCALE: f64 = 10_000.0;

/// Whether `scale` is a time scale a run takes: from 1 (real time) to [`MAX_TIME_SCALE`].
pub fn time_scale_allowed(scale: f64) -> bool {
    scale.is_finite() && (1.0..=MAX_TIME_SCALE).contains(&scale)
}

/// Whether the harness may listen on `address` for others to reach it (its own metrics):
/// on loopback, or on an address `allow_hosts` names (`0.0.0.0`, every interface, only
/// when named). The harness's other servers (stand-ins, alert receiver, kill switch) are
/// on loopback only.
pub fn listen_allowed(allow_hosts: &[String], address: SocketAddr) -> bool {
    address.ip().is_loopback() || host_in(allow_hosts, &address.ip().to_string())
}

/// The shortest real-time fault window `time_scale` may leave without a warning.
pub const MIN_COMPRESSED_FAULT: Duration = Duration::from_secs(2);

/// A validated scenario: everything a run needs to know before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Names the run in reports; defaults to the file stem.
    pub name: String,
    pub description: Option<String>,
    /// The file it came from, as given (for messages and the plan).
    pub path: PathBuf,
    /// The files its `include` brought in (directly or through another), in the order they
    /// were read, each as named: joined onto the directory of the file that includes it.
    /// Empty for a scenario in one file.
    pub includes: Vec<PathBuf>,
    /// A scenario composed of several files: the merged document (without `include`), as
    /// [`Scenario::composed_toml`] writes it. None for a scenario in one file.
    pub composed: Option<toml::Table>,
    /// The root of every random choice; the same seed replays the same schedule.
    pub seed: u64,
    pub target: Target,
    /// Hosts the harness may connect to; checked again at run time for URLs the fleet
    /// hands out (TwiML stream URLs). Use [`Scenario::host_allowed`].
    pub allow_hosts: Vec<String>,
    pub load: Load,
    /// Where the load's spike stages (`spike_to`) are in the schedule, in file order (what
    /// a metric SLO's `min` with `during = "spike"` is graded in).
    pub spikes: Vec<ScheduleWindow>,
    pub calls: CallSettings,
    /// Never empty.
    pub scripts: Vec<CallScript>,
    pub slo: Slos,
    /// `[[faults]]`, in file order.
    pub faults: Vec<ScheduledFault>,
    pub chaos: ChaosSettings,
    pub abort: AbortConditions,
    /// `[observe]`: where the observers watch the fleet.
    pub observe: ObserveSettings,
    /// How many times faster than written the schedule runs (`time_scale`, `--time-scale`;
    /// 1 is real time). The durations above are already divided by it: load stages, the
    /// arrival duration, and each fault's `at`, `for`, `every` and `every_jitter`. What
    /// happens inside a call (audio, turns, timeouts), fault parameters such as rates and
    /// delays, and every SLO (detection, recovery, growth per hour) stay in real time.
    pub time_scale: f64,
    /// How often the reports are rewritten from the journal while the run goes on (real
    /// time); zero: only at the end.
    pub report_every: Duration,
    /// Where the harness serves its own metrics during the run (`metrics_listen`,
    /// `--metrics-listen`); checked with [`listen_allowed`].
    pub metrics_listen: Option<SocketAddr>,
}

impl Scenario {
    /// Whether the harness may connect to `host` (case-insensitive; `[::1]` and `::1` are
    /// the same host, as are `localhost` and `localhost.`).
    pub fn host_allowed(&self, host: &str) -> bool {
        host_in(&self.allow_hosts, host)
    }

    /// What would make a run of `run_for` (the load's duration, or `--duration`) test
    /// less than the file says, with positions: faults never injected.
    pub fn warnings(&self, run_for: Duration) -> Warnings {
        let mut diagnostics = faults::never_injected(&self.faults, run_for, self.seed);
        diagnostics.extend(self.compressed_too_far());
        // The scenario file's first, then each included file's.
        diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Warnings {
            path: self.path.clone(),
            diagnostics,
        }
    }

    /// The same scenario with its schedule compressed `scale` times instead of
    /// [`Scenario::time_scale`] (`--time-scale` on the command line): a scale of 96 runs a
    /// day's schedule in 15 minutes. `scale` must be in `1..=`[`MAX_TIME_SCALE`].
    pub fn with_time_scale(mut self, scale: f64) -> Self {
        let factor = self.time_scale / scale;
        // To the nearest nanosecond.
        let rescale = |duration: &mut Duration| {
            let nanos = (duration.as_nanos() as f64 * factor).round();
            *duration = Duration::try_from_secs_f64(nanos / 1e9).unwrap_or(Duration::MAX);
        };
        match &mut self.load {
            Load::Stages(stages) => stages
                .iter_mut()
                .for_each(|stage| rescale(&mut stage.duration)),
            Load::Arrival(rate) => rescale(&mut rate.duration),
        }
        for spike in &mut self.spikes {
            rescale(&mut spike.at);
            rescale(&mut spike.duration);
        }
        for fault in &mut self.faults {
            rescale(&mut fault.at);
            rescale(&mut fault.duration);
            if let Some(every) = &mut fault.every {
                rescale(&mut every.every);
                rescale(&mut every.jitter);
            }
        }
        self.time_scale = scale;
        self
    }

    /// Faults that `time_scale` leaves shorter than [`MIN_COMPRESSED_FAULT`] in real time:
    /// over before the observers' probes and scrapes (one a second) can see them.
    fn compressed_too_far(&self) -> Vec<Diagnostic> {
        if self.time_scale <= 1.0 {
            return Vec::new();
        }
        let format = crate::units::format_duration;
        self.faults
            .iter()
            .filter(|fault| fault.duration < MIN_COMPRESSED_FAULT)
            .map(|fault| Diagnostic {
                file: fault.file.clone(),
                line: fault.line,
                column: fault.column,
                message: format!(
                    "at time_scale {} fault {:?} lasts {} in real time ({} as written): under {}, it may end before a probe or scrape sees it; give it a longer for or run at a smaller time_scale",
                    self.time_scale,
                    fault.name,
                    format(fault.duration),
                    format(fault.duration.mul_f64(self.time_scale)),
                    format(MIN_COMPRESSED_FAULT)
                ),
            })
            .collect()
    }

    /// How long `scenario_time` of the schedule as written takes in this run.
    pub fn real_time(&self, scenario_time: Duration) -> Duration {
        Duration::try_from_secs_f64(scenario_time.as_secs_f64() / self.time_scale)
            .unwrap_or(Duration::MAX)
    }

    /// A scenario composed of several files as one TOML file, for the run directory: the
    /// merged document with the name, seed and time scale as run, fixtures as the absolute
    /// files validation decoded, and secrets masked as in the journal. None for a scenario
    /// in one file (the file itself is the record).
    pub fn composed_toml(&self) -> Option<String> {
        let document = self.composed.as_ref()?;
        Some(compose::render(self, document))
    }

    /// The same scenario with another seed (`--seed` on the command line).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// Whether `host` is one of `allowed`, compared as [`Scenario::host_allowed`] does.
pub fn host_in(allowed: &[String], host: &str) -> bool {
    validate::host_in(allowed, host)
}

fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// What the harness calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `voxsoak sink`, started by the harness: the harness's own baseline.
    Sink(SinkOptions),
    /// `voxsoak fleet`, the reference fleet, started by the harness on free ports with a
    /// temp SQLite file (or the PostgreSQL the scenario names) and a temp audio dir.
    Embedded(EmbeddedFleet),
    /// A fleet someone else runs.
    External(ExternalTarget),
}

/// How the sink fleet behaves; only meaningful for [`Target::Sink`].
#[derive(Debug, Clone, PartialEq)]
pub struct SinkOptions {
    /// Silence between the end of the caller's speech and the sink's reply.
    pub reply_delay: Duration,
    pub reply_length: Duration,
}

/// How the harness starts the reference fleet (`[target] fleet = "embedded"`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedFleet {
    /// Production bugs switched on (`bugs = ["no-backoff"]`); `--fleet-bug` adds more.
    pub bugs: Vec<crate::contract::fleet::Bug>,
    /// Name of the environment variable holding a `postgres://` URL (`database_url_env`);
    /// None: a SQLite file in the run's temp dir. The URL itself never lands in a file.
    pub database_url_env: Option<String>,
    pub db_pool_size: u32,
    /// Rows seeded into `orders` (default 1,000,000).
    pub orders: u64,
    pub workers: u32,
    pub stall_after: Duration,
    pub stall_after_calls: u32,
    /// `--memory-limit` (`memory_limit = "1GiB"`); None: no limit.
    pub memory_limit: Option<u64>,
    pub temp_dir_budget: u64,
}

impl Default for EmbeddedFleet {
    fn default() -> Self {
        let fleet = crate::contract::fleet::FleetOptions::default();
        EmbeddedFleet {
            bugs: Vec::new(),
            database_url_env: None,
            db_pool_size: fleet.db_pool_size,
            orders: fleet.orders,
            workers: fleet.workers,
            stall_after: fleet.stall_after,
            stall_after_calls: fleet.stall_after_calls,
            memory_limit: fleet.memory_limit,
            temp_dir_budget: fleet.temp_dir_budget,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExternalTarget {
    pub endpoint: Endpoint,
    /// Name of the environment variable holding the Twilio auth token; the secret itself
    /// is read at run time so it never lands in the file, the journal or a report.
    pub auth_token_env: Option<String>,
    /// Sent in `start.customParameters` (stream endpoints only).
    pub custom_parameters: BTreeMap<String, String>,
}

/// Where a call begins.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// A Media Streams WebSocket (`ws://`, `wss://`), connected to directly.
    Stream(url::Url),
    /// A voice webhook (`http://`, `https://`) answered with `<Connect><Stream>` TwiML.
    Webhook(url::Url),
}

impl Endpoint {
    pub fn url(&self) -> &url::Url {
        match self {
            Endpoint::Stream(url) | Endpoint::Webhook(url) => url,
        }
    }
}

/// A stretch of the schedule: from `at` after the start, for `duration` (both in the run's
/// time, already divided by `time_scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleWindow {
    pub at: Duration,
    pub duration: Duration,
}

/// How many calls run, and when.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Closed model: a target number of concurrent calls over time, starting from 0.
    Stages(Vec<Stage>),
    /// Open model: calls arrive at a rate whether or not earlier ones have finished.
    Arrival(ArrivalRate),
}

/// One piece of the closed-model timeline: move linearly from the previous stage's level
/// (0 for the first) to `to` over `duration`. A hold is a stage whose `to` equals the
/// previous level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub to: u32,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArrivalRate {
    pub calls_per_minute: f64,
    pub duration: Duration,
    pub pattern: ArrivalPattern,
    /// Safety cap: an arrival that would exceed it is counted as dropped, never delayed,
    /// so an overloaded fleet cannot quietly lower the offered load.
    pub max_concurrent: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalPattern {
    /// Evenly spaced, first call at 0.
    Uniform,
    /// Exponentially distributed gaps (seeded), like independent callers.
    Poisson,
}

impl Load {
    /// How long calls keep being started.
    pub fn duration(&self) -> Duration {
        match self {
            Load::Stages(stages) => stages.iter().map(|stage| stage.duration).sum(),
            Load::Arrival(rate) => rate.duration,
        }
    }

    /// The most concurrent calls the load can ask for (the cap for the open model).
    pub fn peak_concurrency(&self) -> u32 {
        match self {
            Load::Stages(stages) => stages.iter().map(|stage| stage.to).max().unwrap_or(0),
            Load::Arrival(rate) => rate.max_concurrent,
        }
    }

    /// The target concurrency `t` after the start, interpolated linearly within a stage
    /// and rounded to the nearest call; 0 after the last stage. Always 0 for the open
    /// model, which has no target concurrency.
    pub fn concurrency_at(&self, t: Duration) -> u32 {
        let Load::Stages(stages) = self else {
            return 0;
        };
        let mut start = Duration::ZERO;
        let mut from = 0u32;
        for stage in stages {
            let end = start + stage.duration;
            if t < end {
                let progress = (t - start).as_secs_f64() / stage.duration.as_secs_f64();
                let level = f64::from(from) + (f64::from(stage.to) - f64::from(from)) * progress;
                return level.round() as u32;
            }
            start = end;
            from = stage.to;
        }
        0
    }
}

/// How each call behaves, whatever script it follows.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSettings {
    pub connect_timeout: Duration,
    /// Longest wait for the agent to start replying after the caller stops speaking.
    pub turn_timeout: Duration,
    /// A reply is over after this much silence, when no mark ended it first.
    pub reply_silence: Duration,
    /// Hard stop for one call, so a stuck fleet cannot hold a call slot forever.
    pub max_call_duration: Duration,
    /// Listen for the agent's greeting before the first step.
    pub wait_for_greeting: bool,
    /// When a close by the fleet ends a call well rather than as `fleet_hung_up`.
    pub fleet_may_hang_up: HangUpPolicy,
    /// Sorted by path, de-duplicated; [`UtteranceRef::Fixture`] indexes it.
    pub fixtures: Vec<Fixture>,
    pub synthetic: SyntheticPool,
    /// Caller and callee numbers sent in the webhook and `start` message.
    pub from: String,
    pub to: String,
}

/// A WAV fixture, decoded when the scenario was validated: a run plays exactly what
/// validation read, and can never fail later on a fixture it accepted.
#[derive(Clone, PartialEq)]
pub struct Fixture {
    /// Absolute, with symlinks resolved.
    pub path: PathBuf,
    /// 8 kHz mono 16-bit PCM, as [`crate::audio::wav::load_wav`] makes it; shared, not copied,
    /// with every clone of the scenario.
    pub samples: std::sync::Arc<[i16]>,
}

impl Fixture {
    /// Playing time.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(crate::audio::SAMPLE_RATE))
    }

    /// The name `say` steps use: the file stem.
    pub fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Fixture {
    /// The path and length, not thousands of samples.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("path", &self.path)
            .field("duration", &self.duration())
            .finish()
    }
}

/// When the fleet may end a call itself (`[calls] fleet_may_hang_up`). It applies to a
/// deliberate hang-up only: a WebSocket close frame whose code says the call is over (1000,
/// none, or an application's own 4000-4999). A connection dropped without a close (a crash,
/// a reset) or a close with an error code (1001 going away, 1011 internal error, ...) is
/// always `fleet_hung_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HangUpPolicy {
    /// Every close before the script ends is `fleet_hung_up`.
    #[default]
    Never,
    /// A close once every turn of the script got its answer (the agent's reply to the last
    /// listening step had begun) is `completed`; earlier it is `fleet_hung_up`.
    AfterLastTurn,
    /// Any close by the fleet is `completed`: for fleets that hang up by design.
    Any,
}

impl HangUpPolicy {
    /// Every policy with its name in scenario files.
    pub const ALL: [(HangUpPolicy, &'static str); 3] = [
        (HangUpPolicy::Never, "never"),
        (HangUpPolicy::AfterLastTurn, "after_last_turn"),
        (HangUpPolicy::Any, "any"),
    ];

    /// Whether a hang-up by the fleet ends the call well, `answered` of the script's
    /// `turns` having got their answer.
    pub fn ends_well(self, answered: u32, turns: u32) -> bool {
        match self {
            HangUpPolicy::Never => false,
            HangUpPolicy::AfterLastTurn => answered >= turns,
            HangUpPolicy::Any => true,
        }
    }

    /// The name scenario files use.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(policy, _)| *policy == self)
            .map_or("never", |(_, name)| name)
    }
}

/// Seeded synthetic speech-like utterances, used when there are no fixtures or a step
/// asks for `"synthetic"`. See [`Scenario::synthetic_specs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticPool {
    /// At least 1.
    pub count: u32,
    pub min: Duration,
    pub max: Duration,
}

/// A named kind of call; each call follows one, chosen by weight.
#[derive(Debug, Clone, PartialEq)]
pub struct CallScript {
    pub name: String,
    /// Relative share of calls; at least 1.
    pub weight: u32,
    pub body: ScriptBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScriptBody {
    /// Between `min` and `max` (inclusive) turns of "say a random utterance, then listen".
    Turns { min: u32, max: u32 },
    /// Exactly these steps; a [`Step::Hangup`] can only be last.
    Steps(Vec<Step>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Speak, then (if `listen`) wait for the agent's reply.
    Say {
        utterance: UtteranceRef,
        listen: bool,
    },
    /// Send DTMF digits (`0-9 * # A-D`), then (if `listen`) wait for the reply.
    Dtmf { digits: String, listen: bool },
    /// Stay silent.
    Pause(Duration),
    /// The caller hangs up.
    Hangup,
}

/// What a `say` step speaks, before the per-call random choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtteranceRef {
    /// A random fixture, or a synthetic utterance when there are no fixtures.
    Random,
    /// A random utterance from the synthetic pool.
    Synthetic,
    /// Index into [`CallSettings::fixtures`].
    Fixture(usize),
}

/// Thresholds the run is graded against; `None` is not checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Slos {
    /// Percentage (0–100) of calls that must succeed; defaults to 99.
    pub call_success_min_pct: Option<f64>,
    pub response_p95_max: Option<Duration>,
    pub response_p99_max: Option<Duration>,
    pub first_audio_p95_max: Option<Duration>,
    pub pacing_jitter_p99_max: Option<Duration>,
    /// Every injected fault must be detected (a `detect` signal) within this.
    pub detect_within: Option<Duration>,
    /// The fleet must not storm the TTS: retries back off or jitter, `Retry-After` honoured
    /// (the rules: `chaos::tts_log`).
    pub no_retry_storm: bool,
    /// Every injected fault must be recovered from (steady state held for
    /// `stable_window`) within this.
    pub recover_within: Option<Duration>,
    /// How long the steady state must hold to count as recovered.
    pub stable_window: Duration,
    /// Percentage of health-probed time outside fault windows the fleet must be healthy.
    pub uptime_min_pct: Option<f64>,
    /// Most RSS growth of the fleet, in MiB per hour (least-squares slope after warm-up).
    pub memory_growth_max_mib_h: Option<f64>,
    /// Most growth of the fleet's temp dir, in MiB per hour.
    pub temp_dir_growth_max_mib_h: Option<f64>,
    /// Most times the fleet may exit without the harness stopping it.
    pub max_crashes: Option<u64>,
    /// No alert may fire while no fault is in effect (or within `stable_window` of a
    /// clear): an alert nobody provoked is an incident.
    pub no_unprovoked_alerts: bool,
    /// `[[slo.metric]]`: bounds on the fleet's own series, in file order.
    pub metrics: Vec<MetricSlo>,
}

/// How long the steady state must hold after a fault before the fleet counts as recovered.
pub const DEFAULT_STABLE_WINDOW: Duration = Duration::from_secs(20);

impl Default for Slos {
    fn default() -> Self {
        Slos {
            call_success_min_pct: Some(99.0),
            response_p95_max: None,
            response_p99_max: None,
            first_audio_p95_max: None,
            pacing_jitter_p99_max: None,
            detect_within: None,
            no_retry_storm: false,
            recover_within: None,
            stable_window: DEFAULT_STABLE_WINDOW,
            uptime_min_pct: None,
            memory_growth_max_mib_h: None,
            temp_dir_growth_max_mib_h: None,
            max_crashes: None,
            no_unprovoked_alerts: false,
            metrics: Vec::new(),
        }
    }
}
