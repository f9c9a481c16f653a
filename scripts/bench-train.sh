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
# Then the whole process (unless --run-steps 0): canard-train itself, default flags, on a
# folder of 130 pictures (written here: 64×64 PNGs of noise, since the speed does not depend
# on the content), for RUN_STEPS steps at the largest size, with DiffAugment (the default
# under 2,000 pictures) and without, against the bare step with and without augmentation,
# ours and PyTorch's (DiffAugment written from the paper in bench_torch_step.py). Per step
# it reads the training time from losses.csv (data, step, EMA, logging, previews,
# checkpoints: everything in the loop) and the process's wall time, and the images/s of
# the run's second and last tenths (is it flat?). A second table; a third: the WGAN-GP
# step (its penalty's second-order pass) against PyTorch's.
#
# Options (or the environment variables in brackets):
#   --sizes LIST     image sizes [SIZES; default "32 64"]
#   --batch N        batch size [BATCH; default 64]
#   --width N        ngf = ndf [WIDTH; default 64]
#   --steps N        timed steps per run, after 2 warm-up steps [STEPS; default 10]
#   --python PATH    a Python with torch [TORCH_PYTHON; default: python3 if it has torch]
#   --threads N      threads for both (rayon / torch.set_num_threads) [THREADS; default: all CPUs]
#   --run-steps N    steps of each whole canard-train run; 0 skips them and the WGAN-GP step [RUN_STEPS; default 300]
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
RUN_STEPS="${RUN_STEPS:-300}"

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
        --run-steps) RUN_STEPS="${2:?--run-steps needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
for v in $SIZES $BATCH $WIDTH $STEPS $THREADS; do [[ "$v" =~ ^[0-9]+$ && "$v" -gt 0 ]] || die "not a positive number: $v"; done
[[ "$RUN_STEPS" =~ ^[0-9]+$ ]] || die "--run-steps: not a number: $RUN_STEPS"

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
[[ "$RUN_STEPS" -eq 0 ]] || "$CARGO" build --release --quiet -p canard-train --bin canard-train
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

[[ "$RUN_STEPS" -gt 0 ]] || exit 0
size="${SIZES##* }"
log "whole canard-train runs at ${size}×${size}, $RUN_STEPS steps, on 130 pictures"
python3 - "$tmp/folder" <<'PY'
import os, random, struct, sys, zlib
def png(path, w, h, rgb):
    raw = b"".join(b"\0" + rgb[y * w * 3:(y + 1) * w * 3] for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
os.makedirs(sys.argv[1], exist_ok=True)
r = random.Random(0)
for i in range(130):
    png(os.path.join(sys.argv[1], f"p{i:03}.png"), 64, 64, bytes(r.randrange(256) for _ in range(64 * 64 * 3)))
PY
# Seconds per step over the whole loop, and images/s in the second and the last tenth, from losses.csv.
loop_stats() {
    python3 - "$1" "$BATCH" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
batch = int(sys.argv[2])
t = [float(r["seconds"]) for r in rows]
n = len(t)
tenth = n // 10
def rate(a, b):  # images/s over steps a+1..b
    return batch * (b - a) / (t[b - 1] - t[a - 1])
print(f"{t[-1] / n:.4f} {rate(tenth, 2 * tenth):.1f} {rate(n - tenth, n):.1f}")
PY
}
bare() {  # canard's bare step, seconds
    RAYON_NUM_THREADS="$THREADS" "$target_dir/release/examples/bench_step" --image-size "$size" --batch "$BATCH" \
        --width "$WIDTH" --steps "$STEPS" "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step_s"])'
}
torch_bare() {
    if [[ -z "$TORCH_PYTHON" ]]; then echo "—"; return; fi
    "$TORCH_PYTHON" scripts/bench_torch_step.py --image-size "$size" --batch "$BATCH" --width "$WIDTH" \
        --steps "$STEPS" --threads "$THREADS" "$@" | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["step_s"])'
}
echo
echo "| ${size}×${size}, batch $BATCH, ngf = ndf = $WIDTH, 130 pictures | canard-train s/step (whole loop) | wall s/step (whole process) | canard bare step s | whole loop / bare | PyTorch bare step s | whole loop / PyTorch bare | img/s 2nd tenth | img/s last tenth | last / 2nd |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for mode in augment plain; do
    flag=(); bflag=(); [[ "$mode" == augment ]] && bflag=(--augment) || flag=(--augment false)
    log "canard-train, DiffAugment ${mode/plain/off}"
    start=$(date +%s.%N)
    RAYON_NUM_THREADS="$THREADS" "$target_dir/release/canard-train" --data "$tmp/folder" --name "$mode" --arch dcgan \
        --image-size "$size" --ngf "$WIDTH" --ndf "$WIDTH" --batch-size "$BATCH" --steps "$RUN_STEPS" --eval-images 0 \
        --runs-dir "$tmp/runs" --models-dir "$tmp/models" "${flag[@]}" >"$tmp/$mode.log" 2>&1 \
        || { tail -20 "$tmp/$mode.log" >&2; die "canard-train failed"; }
    wall=$(python3 -c "import sys; print(f'{($(date +%s.%N) - $start) / $RUN_STEPS:.4f}')")
    read -r loop second last < <(loop_stats "$tmp/runs/$mode/losses.csv")
    log "bare steps, DiffAugment ${mode/plain/off}"
    ours=$(bare "${bflag[@]}"); theirs=$(torch_bare "${bflag[@]}")
    vs_torch="—"; [[ "$theirs" != "—" ]] && vs_torch=$(python3 -c "print(f'{$loop / $theirs:.2f}')")
    echo "| DiffAugment ${mode/plain/off} | $loop | $wall | $ours | $(python3 -c "print(f'{$loop / $ours:.2f}')") | $theirs | $vs_torch | $second | $last | $(python3 -c "print(f'{$last / $second:.2f}')") |"
done

log "WGAN-GP step at ${size}×${size} (5 critic updates with the gradient penalty, 1 generator update)"
ours=$(bare --arch wgan-gp); theirs=$(torch_bare --arch wgan-gp)
vs_torch="—"; [[ "$theirs" != "—" ]] && vs_torch=$(python3 -c "print(f'{$ours / $theirs:.2f}')")
echo
echo "| ${size}×${size}, batch $BATCH, ngf = ndf = $WIDTH | canard s/step | PyTorch s/step | canard / PyTorch |"
echo "|---|---|---|---|"
echo "| WGAN-GP (LayerNorm critic, λ 10, 5 critic updates) | $(python3 -c "print(f'{$ours:.3f}')") | $theirs | $vs_torch |"
