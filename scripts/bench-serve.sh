#!/usr/bin/env bash
# Serving benchmark for canard-serve.
#
#   scripts/bench-serve.sh                      # model demo, 1/16/64 connections, 20 s each
#   scripts/bench-serve.sh --duration 5         # a quick run
#   scripts/bench-serve.sh --soak 10            # 10 minutes at 64 connections, RSS every 10 s
#   scripts/bench-serve.sh --soak 30 --reload-every 60   # ... and a new model version every minute
#
# What it does: builds canard-serve (release) and the raw_ort example, installs wrk
# (Debian package) when it is missing, measures raw ONNX Runtime throughput of the
# model (no HTTP: batch 64, batch 64 + PNG, batch 1 + PNG), then starts canard-serve
# on a free port and loads `GET /generate?seed=S` with a distinct seed per request
# (a wrk Lua script counts seeds up per thread, so no response can come from a
# cache), printing a markdown table: connections, requests/s, p50, p99, errors.
#
# Options (or the environment variables in brackets):
#   --model NAME         model to serve [MODEL; default demo]; `demo` is trained with
#                        the Makefile's demo recipe when models/demo is missing
#   --models DIR         models folder [MODELS_DIR; default models]
#   --duration SECONDS   length of each load run [DURATION; default 20]
#   --connections LIST   connection counts, e.g. "1 16 64" [CONNECTIONS]
#   --query STRING       extra query parameters for every request, e.g. "size=128" [QUERY]
#   --soak MINUTES       instead of the sweep: one run at 64 connections for MINUTES,
#                        sampling the server's RSS (VmRSS) every 10 s; at the end, the
#                        answers to /generate by status (from the server's /metrics): 200
#                        and 503 (a full queue) are fine, anything else, or a socket error,
#                        fails the run (exit 1); so does memory growth (--rss-growth)
#   --rss-growth MIB     with --soak: the run fails (exit 1) when the server's RSS, at any
#                        sample after the warm-up, exceeds the RSS at the end of the
#                        warm-up by more than MIB [RSS_GROWTH_MIB; default 64]. The warm-up
#                        is the first minute, or the first half of a soak shorter than two
#                        minutes: allocator arenas and ONNX Runtime's buffers grow to their
#                        working size first, a leak keeps growing after
#   --reload-every SECONDS  with --soak: serve a scratch copy of the model's folder (the
#                        real one is never touched) and every SECONDS replace its files
#                        with the other of two versions (each file copied beside and
#                        renamed in, the ONNX file before model.json), so hot reload loads
#                        a new model each time. The versions: the model's own files and a
#                        copy of them (same pictures, new files), or --reload-with DIR.
#                        The server polls every second; the run fails unless every
#                        replacement was loaded (canard_model_reloads_total) and none refused
#   --reload-with DIR    with --reload-every: the second version, another model folder
#   --no-raw             skip the raw ONNX Runtime measurement
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

MODEL="${MODEL:-demo}"
MODELS_DIR="${MODELS_DIR:-models}"
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
QUERY="${QUERY:-}"
SOAK=""
RELOAD_EVERY=""
RELOAD_WITH=""
RSS_GROWTH_MIB="${RSS_GROWTH_MIB:-64}"
RAW=1
CARGO="${CARGO:-cargo}"

die() { echo "bench-serve: error: $*" >&2; exit 1; }
log() { echo "bench-serve: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) MODEL="${2:?--model needs a value}"; shift 2 ;;
        --models) MODELS_DIR="${2:?--models needs a value}"; shift 2 ;;
        --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?--connections needs a value}"; shift 2 ;;
        --query) QUERY="${2?--query needs a value}"; shift 2 ;;
        --soak) SOAK="${2:?--soak needs a number of minutes}"; shift 2 ;;
        --reload-every) RELOAD_EVERY="${2:?--reload-every needs a number of seconds}"; shift 2 ;;
        --reload-with) RELOAD_WITH="${2:?--reload-with needs a model folder}"; shift 2 ;;
        --rss-growth) RSS_GROWTH_MIB="${2:?--rss-growth needs a number of MiB}"; shift 2 ;;
        --no-raw) RAW=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -gt 0 ]] || die "--duration must be a whole number of seconds"
[[ -z "$SOAK" || "$SOAK" =~ ^[0-9]+$ ]] || die "--soak must be a whole number of minutes"
[[ "$RSS_GROWTH_MIB" =~ ^[0-9]+$ ]] || die "--rss-growth must be a whole number of MiB"
if [[ -n "$RELOAD_EVERY" ]]; then
    [[ -n "$SOAK" ]] || die "--reload-every goes with --soak"
    # A change is loaded once it looks the same on two polls a second apart.
    [[ "$RELOAD_EVERY" =~ ^[0-9]+$ && "$RELOAD_EVERY" -ge 3 ]] || die "--reload-every must be a whole number of seconds, at least 3"
fi
[[ -z "$RELOAD_WITH" || -n "$RELOAD_EVERY" ]] || die "--reload-with goes with --reload-every"
[[ -z "$RELOAD_WITH" || -f "$RELOAD_WITH/model.json" ]] || die "--reload-with $RELOAD_WITH: no model.json there"
for c in $CONNECTIONS; do [[ "$c" =~ ^[0-9]+$ && "$c" -gt 0 ]] || die "bad connection count $c"; done

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

# --- what the benchmark needs ------------------------------------------------------
if ! command -v wrk >/dev/null; then
    log "installing wrk (Debian package)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
command -v curl >/dev/null || die "curl is needed"

if [[ -z "${ORT_DYLIB_PATH:-}" ]]; then
    scripts/setup-ort.sh >&2
    export ORT_DYLIB_PATH="$root/.deps/onnxruntime/libonnxruntime.so"
fi

log "building canard-serve (release)"
"$CARGO" build --release --quiet -p canard-serve
target_dir="$("$CARGO" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
serve_bin="$target_dir/release/canard-serve"

model_dir="$MODELS_DIR/$MODEL"
if [[ ! -f "$model_dir/model.json" ]]; then
    [[ "$MODEL" == demo ]] || die "no model at $model_dir (model.json missing)"
    log "$model_dir is missing: training it with the demo recipe (a few minutes on CPU)"
    "$CARGO" build --release --quiet -p canard-train
    demo_args=$(make -s --no-print-directory -f Makefile -f - print-demo-args <<<'print-demo-args: ; @echo $(DEMO_ARGS)')
    # shellcheck disable=SC2086
    "$target_dir/release/canard-train" --name demo $demo_args --models-dir "$MODELS_DIR" >&2
fi

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "## canard-serve benchmark"
echo
echo "- machine: $(nproc) CPU(s), ${cpu:-unknown CPU}; $(uname -sr)"
echo "- model: $MODEL ($(python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print("%sx%s, %s channel(s), latent %s, %s" % (m["image_size"], m["image_size"], m["channels"], m["latent"]["dim"], m["arch"]))' "$model_dir/model.json"))"
echo "- load tool: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), distinct seed per request"
echo

# --- raw ONNX Runtime, no HTTP ------------------------------------------------------
if [[ "$RAW" -eq 1 && -z "$SOAK" ]]; then
    log "building the raw_ort example (release)"
    "$CARGO" build --release --quiet -p canard-e2e --example raw_ort
    raw_secs=$(( DURATION < 10 ? DURATION : 10 ))
    echo "### Raw ONNX Runtime (same model, no HTTP, ${raw_secs} s each)"
    echo
    echo "| mode | images/s | ms per run |"
    echo "|---|---:|---:|"
    for mode in "64" "64 --png" "1 --png"; do
        # shellcheck disable=SC2086
        line=$("$target_dir/release/examples/raw_ort" --model "$model_dir" --seconds "$raw_secs" --batch $mode | grep '^RESULT')
        ips=$(sed -n 's/.*images_per_s=\([^ ]*\).*/\1/p' <<<"$line")
        ms=$(sed -n 's/.*ms_per_run=\([^ ]*\).*/\1/p' <<<"$line")
        label="batch ${mode%% *}"; [[ "$mode" == *--png* ]] && label="$label + PNG encode" || label="$label, inference only"
        echo "| $label | $ips | $ms |"
    done
    echo
fi

# --- the server ---------------------------------------------------------------------
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
server_log="$(mktemp)"
lua="$(mktemp --suffix=.lua)"
server_pid=""
reloader_pid=""
scratch=""
cleanup() {
    if [[ -n "$reloader_pid" ]] && kill -0 "$reloader_pid" 2>/dev/null; then
        kill "$reloader_pid" 2>/dev/null || true
        wait "$reloader_pid" 2>/dev/null || true
    fi
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$lua" "$server_log"
    [[ -z "$scratch" ]] || rm -rf "$scratch"
}
trap cleanup EXIT

serve_models="$MODELS_DIR"
serve_args=()
if [[ -n "$RELOAD_EVERY" ]]; then
    # The served folder and the two versions its files alternate between, all on one
    # file system so that a rename replaces a file at once.
    scratch="$(mktemp -d)"
    serve_models="$scratch/models"
    mkdir -p "$serve_models/$MODEL" "$scratch/version-a" "$scratch/version-b" "$serve_models/.incoming"
    cp -p "$model_dir"/* "$serve_models/$MODEL/"
    cp "$model_dir"/* "$scratch/version-a/"
    cp "${RELOAD_WITH:-$model_dir}"/* "$scratch/version-b/"
    serve_args=(--reload-interval 1)
    log "serving a scratch copy of $model_dir from $serve_models; its files are replaced every ${RELOAD_EVERY} s"
fi

"$serve_bin" --models "$serve_models" --model "$MODEL" --bind "127.0.0.1:$port" "${serve_args[@]}" >"$server_log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$server_log" >&2; die "canard-serve exited"; }
    sleep 0.1
done
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$server_log" >&2; die "canard-serve did not answer /healthz"; }
provider="$(curl -fs "http://127.0.0.1:$port/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("execution_provider","?"))')"
log "canard-serve pid $server_pid on port $port ($provider)"

extra=""; [[ -n "$QUERY" ]] && extra="&$QUERY"
# Seeds: run * 1e13 + thread * 1e11 + counter, so no two requests of the whole
# benchmark share one. Numbers stay below 2^53, exact in Lua's doubles.
cat >"$lua" <<EOF
local threads, n = {}, 0
function setup(thread)
    n = n + 1
    thread:set("tid", n)
    table.insert(threads, thread)
end
function init(args)
    base = tonumber(args[1]) * 1e13 + tid * 1e11
    count = 0
end
function request()
    count = count + 1
    return wrk.format("GET", string.format("/generate?seed=%.0f${extra//%/%%}", base + count))
end
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("BENCH requests=%d seconds=%.3f rps=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d non2xx=%d\n",
        summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        e.connect + e.read + e.write + e.status + e.timeout, e.status))
end
EOF

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$server_pid/status"; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# One load run: connections, seconds, run number → the BENCH line.
load() {
    local c=$1 secs=$2 run=$3 threads
    threads=$(( c < $(nproc) ? c : $(nproc) ))
    wrk -t "$threads" -c "$c" -d "${secs}s" --timeout 30s -s "$lua" "http://127.0.0.1:$port/" -- "$run" | grep '^BENCH'
}

# A short warm-up so the first row does not pay for the session's first runs.
load 4 2 0 >/dev/null

# One sample of the server's /metrics, e.g. 'canard_models_loaded'; 0 when absent.
metric() {
    curl -fs "http://127.0.0.1:$port/metrics" | awk -v name="$1" '$1 == name { v = $2 } END { print v + 0 }'
}
reloads() { metric "canard_model_reloads_total{model=\"$MODEL\",result=\"$1\"}"; }
# "STATUS COUNT" per status of /generate answers so far.
statuses() {
    curl -fs "http://127.0.0.1:$port/metrics" |
        sed -n 's/^canard_http_requests_total{route="\/generate",status="\([0-9]*\)"} \([0-9]*\)$/\1 \2/p' | sort
}

# Every RELOAD_EVERY seconds: the other version's files, each copied into a hidden
# folder of the models folder (ignored by the server) and renamed into the model's
# folder, model.json last. Prints a line per replacement. SIGTERM stops it between
# two replacements, never in the middle of one.
reload_loop() {
    local n=0 version f stop=0
    trap 'stop=1' TERM
    while true; do
        sleep "$RELOAD_EVERY" &
        wait $! || true
        if [[ $stop -eq 1 ]]; then
            kill $! 2>/dev/null || true
            break
        fi
        n=$(( n + 1 ))
        version="$scratch/version-$([[ $(( n % 2 )) -eq 1 ]] && echo b || echo a)"
        for f in $(ls "$version" | grep -vx model.json) model.json; do
            cp "$version/$f" "$serve_models/.incoming/$f"
            mv -f "$serve_models/.incoming/$f" "$serve_models/$MODEL/$f"
        done
        echo "replaced $n $(date +%s)"
    done
}

if [[ -n "$SOAK" ]]; then
    secs=$(( SOAK * 60 ))
    echo "### Soak: 64 connections for $SOAK min${RELOAD_EVERY:+, the model replaced every $RELOAD_EVERY s}"
    echo
    out="$(mktemp)"
    swaps="$(mktemp)"
    statuses >"$out.before"
    loaded_before=$(reloads loaded)
    refused_before=$(reloads refused)
    load 64 "$secs" 1 >"$out" &
    wrk_pid=$!
    if [[ -n "$RELOAD_EVERY" ]]; then
        reload_loop >"$swaps" &
        reloader_pid=$!
    fi
    echo "| t (s) | RSS (MiB) | model replaced | reloads loaded | refused |"
    echo "|---:|---:|---:|---:|---:|"
    # RSS at the end of the warm-up, and the most after it (see --rss-growth).
    warm=$(( secs >= 120 ? 60 : secs / 2 ))
    rss_base=""
    rss_peak=""
    sample() {
        local t rss
        t=$(( $(date +%s) - start ))
        rss="$(rss_mib)"
        if [[ -n "$rss" && $t -ge $warm ]]; then
            [[ -n "$rss_base" ]] || rss_base=$rss
            rss_peak=$(awk -v a="${rss_peak:-0}" -v b="$rss" 'BEGIN { print (b > a ? b : a) }')
        fi
        printf '| %d | %s | %d | %d | %d |\n' "$t" "${rss:-?}" "$(wc -l <"$swaps")" \
            "$(( $(reloads loaded) - loaded_before ))" "$(( $(reloads refused) - refused_before ))"
    }
    start=$(date +%s)
    next=$start
    while kill -0 "$wrk_pid" 2>/dev/null; do
        if [[ $(date +%s) -ge $next ]]; then
            sample
            next=$(( next + 10 ))
        fi
        sleep 0.2
    done
    wait "$wrk_pid" || true
    if [[ -n "$reloader_pid" ]]; then
        kill "$reloader_pid" 2>/dev/null || true
        wait "$reloader_pid" 2>/dev/null || true
        reloader_pid=""
        # The last replacement may still be waiting for its second look and its load.
        sleep 4
    fi
    sample
    line="$(cat "$out")"
    statuses >"$out.after"
    [[ -n "$line" ]] || die "wrk reported nothing"
    echo
    echo "| connections | requests | requests/s | p50 (ms) | p99 (ms) | socket errors | non-2xx |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    socket_errors=$(( $(field errors "$line") - $(field non2xx "$line") ))
    echo "| 64 | $(field requests "$line") | $(field rps "$line") | $(field p50_ms "$line") | $(field p99_ms "$line") | $socket_errors | $(field non2xx "$line") |"
    echo
    echo "Answers to /generate during the soak, by status (the server's canard_http_requests_total):"
    echo
    echo "| status | answers |"
    echo "|---:|---:|"
    bad=0
    while read -r status count; do
        before=$(awk -v s="$status" '$1 == s { print $2 }' "$out.before")
        count=$(( count - ${before:-0} ))
        [[ $count -gt 0 ]] || continue
        echo "| $status | $count |"
        case "$status" in 2??|503) ;; *) bad=$(( bad + count )) ;; esac
    done <"$out.after"
    echo
    replaced=$(wc -l <"$swaps")
    loaded=$(( $(reloads loaded) - loaded_before ))
    refused=$(( $(reloads refused) - refused_before ))
    rm -f "$out" "$out.before" "$out.after" "$swaps"
    failed=0
    if [[ -n "$RELOAD_EVERY" ]]; then
        echo "Hot reload: the model's files replaced $replaced times, reloaded $loaded times, refused $refused times."
        if [[ $loaded -ne $replaced || $refused -ne 0 ]]; then
            log "error: $replaced replacements, $loaded reloads, $refused refusals; the server log:"
            grep -i "reload" "$server_log" | tail -20 >&2
            failed=1
        fi
    fi
    if [[ $bad -gt 0 || $socket_errors -gt 0 ]]; then
        log "error: $bad answers other than 2xx or 503, $socket_errors socket errors"
        failed=1
    fi
    if [[ -z "$rss_base" ]]; then
        log "error: no RSS sample after the ${warm} s warm-up"
        failed=1
    else
        growth=$(awk -v a="$rss_base" -v b="$rss_peak" 'BEGIN { printf "%.1f", b - a }')
        echo "Memory: RSS $rss_base MiB at the end of the ${warm} s warm-up, at most $rss_peak MiB after it" \
            "(+$growth MiB; the bound is +$RSS_GROWTH_MIB MiB, --rss-growth)."
        if awk -v g="$growth" -v max="$RSS_GROWTH_MIB" 'BEGIN { exit !(g > max) }'; then
            log "error: the server's RSS grew by $growth MiB after the warm-up ($rss_base -> $rss_peak MiB)," \
                "more than --rss-growth $RSS_GROWTH_MIB MiB: memory is not flat"
            failed=1
        fi
    fi
    kill -0 "$server_pid" 2>/dev/null || die "canard-serve died during the soak"
    exit "$failed"
fi

echo "### HTTP: GET /generate?seed=S${extra}, ${DURATION} s per row"
echo
echo "| connections | requests/s | p50 (ms) | p99 (ms) | errors | server RSS after (MiB) |"
echo "|---:|---:|---:|---:|---:|---:|"
run=1
for c in $CONNECTIONS; do
    line="$(load "$c" "$DURATION" "$run")"
    [[ -n "$line" ]] || die "wrk reported nothing for $c connections"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$c" "$(field rps "$line")" "$(field p50_ms "$line")" \
        "$(field p99_ms "$line")" "$(field errors "$line")" "$(rss_mib)"
    run=$(( run + 1 ))
done
echo
echo "errors = connect + read + write + timeout + non-2xx responses (wrk's counts)."
kill -0 "$server_pid" 2>/dev/null || die "canard-serve died during the benchmark"
