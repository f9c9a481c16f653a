#!/usr/bin/env bash
# Does the exported moving average help? For each run length, one run with the default
# EMA (half-life in images, ramped up with the run) and the same run with
# `--ema-half-life 0`: the same seed gives the same training, so the two SWDs differ
# only by the average. Prints a Markdown table (QUALITY.md).
#
# Usage: scripts/bench-ema.sh [--data builtin:shapes] [--image-size 32] [--width 32]
#                             [--lengths "200 600 2000"] [--bin target/release/canard-train]
set -euo pipefail

DATA=builtin:shapes
SIZE=32
WIDTH=32
LENGTHS="200 600 2000"
BIN=target/release/canard-train
die() { echo "bench-ema: error: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) DATA="${2:?--data needs a value}"; shift 2 ;;
        --image-size) SIZE="${2:?--image-size needs a value}"; shift 2 ;;
        --width) WIDTH="${2:?--width needs a value}"; shift 2 ;;
        --lengths) LENGTHS="${2:?--lengths needs a value}"; shift 2 ;;
        --bin) BIN="${2:?--bin needs a path}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
for v in $SIZE $WIDTH $LENGTHS; do [[ "$v" =~ ^[0-9]+$ && "$v" -gt 0 ]] || die "not a positive number: $v"; done
[[ -x "$BIN" ]] || cargo build --release --quiet -p canard-train --bin canard-train

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
swd() {  # the SWD ×10³ the run printed at its end
    grep -o 'SWD ×10³ [0-9.]*' "$1" | tail -1 | awk '{print $3}'
}
echo "| $DATA, ${SIZE}×${SIZE}, ngf = ndf = $WIDTH | steps | SWD ×10³ with EMA (default) | SWD ×10³ without (\`--ema-half-life 0\`) | with / without |"
echo "|---|---|---|---|---|"
for steps in $LENGTHS; do
    for mode in ema none; do
        extra=(); [[ "$mode" == none ]] && extra=(--ema-half-life 0)
        "$BIN" --data "$DATA" --name "$mode-$steps" --arch dcgan --image-size "$SIZE" --ngf "$WIDTH" --ndf "$WIDTH" --seed 0 \
            --steps "$steps" --runs-dir "$tmp/runs" --models-dir "$tmp/models" "${extra[@]}" > "$tmp/$mode-$steps.log" 2>&1 \
            || { tail "$tmp/$mode-$steps.log" >&2; die "the $mode run of $steps steps failed"; }
    done
    a=$(swd "$tmp/ema-$steps.log"); b=$(swd "$tmp/none-$steps.log")
    echo "| | $steps | $a | $b | $(python3 -c "print(f'{$a / $b:.2f}')") |"
done
