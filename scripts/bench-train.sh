#!/usr/bin/env bash
# Training-step benchmark: canard-train vs PyTorch on this machine's CPU.
#
#   scripts/bench-train.sh                  # 32×32 and 64×64, batch 64, ngf = ndf = 64
#   scripts/bench-train.sh --sizes 64       # one size
#
# What it does: builds the bench_step example (the trainer's own DCGAN step on random
# data) and, for each image size, runs it in a fresh process (images/s and peak RSS),
# exports that generator to ONNX and times its forward pass under ONNX Runtime (the
# raw_ort example, batch 64, no PNG), and — when a Python with torch is found — runs
# the same step in PyTorch (scripts/bench_torch_step.py), each in its own process.
# Prints a markdown table; BENCHMARKS.md records it.
#
# Options (or the environment variables in brackets):
#   --sizes LIST     image sizes [SIZES; default "32 64"]
#   --batch N        batch size [BATCH; default 64]
#   --width N        ngf = ndf [WIDTH; default 64]
#   --steps N        timed steps per run, after 2 warm-up steps [STEPS; default 10]
#   --python PATH    a Python with torch [TORCH_PYTHON; default: python3 if it has torch]
#   --threads N      threads for both (rayon / torch.set_num_threads) [THREADS; default: all CPUs]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SIZES="${SIZES:-32 64}"
BATCH="${BATCH:-64}"
WIDTH="${WIDTH:-64}"
STEPS="${STEPS:-10}"
TORCH_PYTHON="${TORCH_PYTHON:-}"
THREADS="${THREADS:-$(nproc)}"
CARGO="${CARGO:-cargo}"

die() { echo "bench-train: error: $*" >&2; exit 1; }
log() { echo "bench-train: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --sizes) SIZES="${2:?--sizes needs a value}"; shift 2 ;;
        --batch) BATCH="${2:?--batch needs a value}"; shift 2 ;;
        --width) WIDTH="${2:?--width needs a value}"; shift 2 ;;
        --steps) STEPS="${2:?--steps needs a value}"; shift 2 ;;
        --python) TORCH_PYTHON="${2:?--python needs a path}"; shift 2 ;;
        --threads) THREADS="${2:?--threads needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
for v in $SIZES $BATCH $WIDTH $STEPS $THREADS; do [[ "$v" =~ ^[0-9]+$ && "$v" -gt 0 ]] || die "not a positive number: $v"; done

if [[ -z "$TORCH_PYTHON" ]] && python3 -c "import torch" 2>/dev/null; then TORCH_PYTHON=python3; fi
if [[ -n "$TORCH_PYTHON" ]]; then
    "$TORCH_PYTHON" -c "import torch" 2>/dev/null || die "$TORCH_PYTHON cannot import torch"
    log "PyTorch: $("$TORCH_PYTHON" -c 'import torch; print(torch.__version__)')"
else
    log "no Python with torch found (pass --python): the PyTorch columns stay empty"
fi

[[ -f .deps/onnxruntime/libonnxruntime.so ]] || scripts/setup-ort.sh
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/.deps/onnxruntime/libonnxruntime.so}"
log "building the bench_step and raw_ort examples (release)"
"$CARGO" build --release --quiet -p canard-train --example bench_step
"$CARGO" build --release --quiet -p canard-e2e --example raw_ort
target_dir="$("$CARGO" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
fmt() { python3 -c "import sys; print(f'{float(sys.argv[1]):,.{int(sys.argv[2])}f}')" "$1" "$2"; }

echo "| image size | batch | ngf = ndf | canard img/s | canard peak RSS | PyTorch img/s | PyTorch peak RSS | speed ratio (canard/PyTorch) | memory ratio | ONNX Runtime G forward img/s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
    log "canard-train step at ${size}×${size}"
    ours=$(RAYON_NUM_THREADS="$THREADS" "$target_dir/release/examples/bench_step" --image-size "$size" --batch "$BATCH" \
        --width "$WIDTH" --steps "$STEPS" --export "$tmp/$size")
    ours_ips=$(field "$ours" images_per_s); ours_rss=$(field "$ours" peak_rss_mib)
    log "ONNX Runtime forward of that generator"
    ort_ips=$("$target_dir/release/examples/raw_ort" --model "$tmp/$size/bench" --batch "$BATCH" --seconds 3 \
        --threads "$THREADS" | sed -n 's/^RESULT.* images_per_s=\([0-9.]*\).*/\1/p')
    torch_ips="—"; torch_rss="—"; ratio="—"; mem="—"
    if [[ -n "$TORCH_PYTHON" ]]; then
        log "PyTorch step at ${size}×${size}"
        theirs=$("$TORCH_PYTHON" scripts/bench_torch_step.py --image-size "$size" --batch "$BATCH" --width "$WIDTH" \
            --steps "$STEPS" --threads "$THREADS")
        t_ips=$(field "$theirs" images_per_s); t_rss=$(field "$theirs" peak_rss_mib)
        torch_ips=$(fmt "$t_ips" 1); torch_rss="$(fmt "$t_rss" 0) MiB"
        ratio=$(python3 -c "print(f'{$ours_ips / $t_ips:.2f}')")
        mem=$(python3 -c "print(f'{$ours_rss / $t_rss:.2f}')")
    fi
    echo "| ${size}×${size} | $BATCH | $WIDTH | $(fmt "$ours_ips" 1) | $(fmt "$ours_rss" 0) MiB | $torch_ips | $torch_rss | $ratio | $mem | $(fmt "$ort_ips" 0) |"
done
