#!/bin/sh
# Runs every cargo-fuzz target of fuzz/ (or those named) for SECONDS each, one at a
# time, one libFuzzer job each, and prints the executions per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # default: 60 s, all targets
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); the onnx_serve
# target also needs ONNX Runtime (`make setup`, or ORT_DYLIB_PATH). New inputs go to
# fuzz/corpus/TARGET (not committed; the committed seeds are fuzz/seeds/TARGET), crashes
# to fuzz/artifacts/TARGET, each run's log to fuzz/logs/TARGET.log. Each cargo command
# runs under `heavy` (a machine-wide lock) where that exists. Exits non-zero if any
# target failed.
set -eu

secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-query manifest onnx_reader onnx_serve}
cd "$(dirname "$0")/../fuzz"
lock=
command -v heavy >/dev/null 2>&1 && lock=heavy
mkdir -p logs

for t in $targets; do
    $lock cargo +nightly fuzz build "$t" >logs/build.log 2>&1 || { tail -30 logs/build.log; exit 1; }
done

failed=0
summary=
for t in $targets; do
    # onnx_serve runs without leak detection (per input, and at exit): ONNX Runtime and
    # ort, not instrumented, keep or leak small allocations canard cannot free (ort
    # 2.0.0-rc.15 leaks ~100 bytes on each model it panics on, which canard-serve
    # refuses), and the leak checks they trigger slow the target tenfold.
    extra= asan=${ASAN_OPTIONS:-}
    case $t in
        query) dict=query.dict ;;
        manifest) dict=manifest.dict ;;
        onnx_reader) dict=onnx.dict ;;
        onnx_serve) dict=onnx.dict extra=-detect_leaks=0 asan=detect_leaks=0${asan:+:$asan} ;;
        *) dict= ;;
    esac
    mkdir -p "corpus/$t"
    log=logs/$t.log
    start=$(date +%s)
    status=ok
    # -timeout: one input running longer than this is reported as a hang.
    ASAN_OPTIONS=$asan $lock cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=60 -print_final_stats=1 ${dict:+-dict=dicts/$dict} $extra \
        >"$log" 2>&1 || status="FAILED (see fuzz/$log and fuzz/artifacts/$t)"
    took=$(( $(date +%s) - start ))
    [ "$status" = ok ] || failed=1
    # libFuzzer's last words: "#N DONE ..." and "stat::number_of_executed_units: N".
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*DONE.*/\1/p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    # "Done N runs in S second(s)": the fuzzing time itself (took also counts the build
    # check and waiting for the lock).
    fuzzed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    done_line=$(grep -E '^#[0-9]+.*DONE' "$log" | tail -1 || true)
    line=$(printf '%-12s %10s executions in %4s s (%6s exec/s; %4s s wall)  %s' \
        "$t" "${execs:-?}" "${fuzzed:-?}" "${speed:-?}" "$took" "$status")
    echo "$line"
    [ -n "$done_line" ] && echo "             $done_line"
    summary="$summary$line
"
done
echo
echo "per target: -max_total_time=$secs"
printf '%s' "$summary"
exit $failed
