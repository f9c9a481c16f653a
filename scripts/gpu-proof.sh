#!/usr/bin/env bash
# The GPU proof: canard-train on CUDA (candle) and canard-serve on ONNX Runtime's CUDA
# provider, measured against PyTorch and the CPU, in one run that writes one report.
#
#   scripts/gpu-proof.sh --bundle DIR     # here (no GPU needed): put what the run needs into DIR
#   scripts/gpu-proof.sh [--from DIR]     # on the GPU machine (no cargo): run it, write REPORT.md
#   scripts/gpu-proof.sh --cpu-check      # here: every part that runs without a GPU, on the CPU builds
#
# The GPU machine needs the NVIDIA driver, the CUDA 13 / cuDNN 9 libraries of a PyTorch for
# CUDA 13 (its site-packages/nvidia/*/lib go on LD_LIBRARY_PATH; found through TORCH_PYTHON,
# default python3) and nothing else: no cargo, no network. The bundle holds the binaries
# built here (the CUDA canard-train from `make build-cuda`, canard-serve with the cuda
# feature, the raw_ort example with the cuda feature), wrk and its library (Debian
# packages, unpacked), and the scripts. ONNX Runtime's CUDA provider (onnxruntime-gpu,
# 284 MB unpacked) must already be on the GPU machine, in ORT_GPU_DIR (the folder holding
# libonnxruntime.so.1.31.1, libonnxruntime_providers_shared.so and
# libonnxruntime_providers_cuda.so); without it the serving parts say so and are skipped.
#
# What it measures (each part's command is in the report beside its numbers):
#   1. the machine: GPU, driver, memory;
#   2. training that learns: fastgan (with and without R1), DCGAN and WGAN-GP runs on
#      builtin:shapes (32×32) on CUDA, the engine's candle path (every layer's backward by
#      candle's backprop, the penalties' tangent pass): steps, images/s, SWD, sample grids
#      (copied into OUT);
#   3. export parity: the CUDA-trained generator's preview (candle's CUDA forward) against
#      canard-serve's picture for the same 64 seeds, CPU provider and CUDA provider: max
#      abs difference in 8-bit levels; CUDA vs CPU provider likewise;
#   4. training speed: DCGAN 64×64 at batch 64 and 256, and 128×128 at batch 64: canard-train
#      images/s (its own loop, from losses.csv) and peak GPU memory, against PyTorch with the
#      same network, optimiser and batch (scripts/bench_torch_step.py --device cuda);
#   5. serving: raw ONNX Runtime images/s at batch 1/16/64/256, GPU and CPU provider; the
#      server under wrk at 1/16/64/256 connections (requests/s, p50, p99).
#
# Options (or environment variables):
#   --out DIR        where the report and pictures go [OUT; default gpu-proof-out]
#   --steps N        steps of each speed run [STEPS; default 60]
#   --learn-steps N  steps of each learning run [LEARN_STEPS; default 1500]
#   --seconds S      seconds of each raw ONNX Runtime and wrk measurement [SECONDS_EACH; default 8]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

MODE=run
FROM=""
BUNDLE=""
OUT="${OUT:-gpu-proof-out}"
STEPS="${STEPS:-60}"
LEARN_STEPS="${LEARN_STEPS:-1500}"
SECONDS_EACH="${SECONDS_EACH:-8}"
TORCH_PYTHON="${TORCH_PYTHON:-python3}"

die() { echo "gpu-proof: error: $*" >&2; exit 1; }
log() { echo "gpu-proof: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) MODE=bundle; BUNDLE="${2:?--bundle needs a folder}"; shift 2 ;;
        --from) FROM="${2:?--from needs a folder}"; shift 2 ;;
        --cpu-check) MODE=cpu; shift ;;
        --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
        --steps) STEPS="${2:?--steps needs a value}"; shift 2 ;;
        --learn-steps) LEARN_STEPS="${2:?--learn-steps needs a value}"; shift 2 ;;
        --seconds) SECONDS_EACH="${2:?--seconds needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
for v in "$STEPS" "$LEARN_STEPS" "$SECONDS_EACH"; do [[ "$v" =~ ^[0-9]+$ && "$v" -gt 0 ]] || die "not a positive number: $v"; done

# --- here: the bundle -----------------------------------------------------------------
if [[ "$MODE" == bundle ]]; then
    mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/scripts"
    CARGO="${CARGO:-cargo}"
    log "building the CUDA canard-train (make build-cuda: 10-20 minutes on two cores the first time)"
    CARGO="$CARGO" scripts/build-cuda.sh >&2
    log "building canard-serve and raw_ort with the cuda feature (ONNX Runtime is loaded at run time)"
    "$CARGO" build --release --quiet -p canard-serve --features cuda --target-dir target/cuda
    "$CARGO" build --release --quiet -p canard-e2e --example raw_ort --features cuda --target-dir target/cuda
    cp target/cuda/release/canard-train target/cuda/release/canard-serve target/cuda/release/examples/raw_ort "$BUNDLE/bin/"
    strip "$BUNDLE/bin/"* 2>/dev/null || true
    log "wrk and its library (Debian packages, unpacked into the bundle)"
    tmp="$(mktemp -d)"
    (cd "$tmp" && apt-get download wrk libluajit-5.1-2 >/dev/null 2>&1) || die "apt-get download wrk failed (run apt-get update first)"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/x"; done
    cp "$tmp/x/usr/bin/wrk" "$BUNDLE/bin/"
    cp -P "$tmp"/x/usr/lib/*/libluajit-5.1.so.2* "$BUNDLE/lib/"
    rm -rf "$tmp"
    cp scripts/gpu-proof.sh scripts/bench_torch_step.py "$BUNDLE/scripts/"
    du -sh "$BUNDLE" >&2
    log "done: carry $BUNDLE and run scripts/gpu-proof.sh --from $BUNDLE there"
    exit 0
fi

# --- the binaries and libraries -------------------------------------------------------
if [[ "$MODE" == cpu ]]; then
    BIN="$root/target/release"
    RAW_ORT="$BIN/examples/raw_ort"
    [[ -x "$BIN/canard-train" && -x "$BIN/canard-serve" && -x "$RAW_ORT" ]] \
        || die "--cpu-check needs the CPU builds: cargo build --release -p canard-train -p canard-serve && cargo build --release -p canard-e2e --example raw_ort"
    DEVICE=cpu
    [[ -f .deps/onnxruntime/libonnxruntime.so ]] || scripts/setup-ort.sh >&2
    ORT_CPU="$root/.deps/onnxruntime/libonnxruntime.so"
    ORT_GPU=""
else
    [[ -n "$FROM" ]] || die "on the GPU machine: --from BUNDLE (made here by --bundle)"
    BIN="$(cd "$FROM/bin" && pwd)"
    RAW_ORT="$BIN/raw_ort"
    export LD_LIBRARY_PATH="$(cd "$FROM/lib" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia="$("$TORCH_PYTHON" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0] if hasattr(nvidia, "__path__") else nvidia.__file__))' 2>/dev/null)/nvidia" \
        || die "$TORCH_PYTHON has no nvidia libraries (a PyTorch for CUDA 13 is needed)"
    for d in "$nvidia"/*/lib "$nvidia"/cu13/lib; do [[ -d "$d" ]] && LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"; done
    export LD_LIBRARY_PATH
    DEVICE=cuda
    ORT_GPU="${ORT_GPU_DIR:+$ORT_GPU_DIR/libonnxruntime.so.1.31.1}"
    ORT_CPU="$ORT_GPU"  # the GPU build runs the CPU provider too
    [[ -z "$ORT_GPU" || -f "$ORT_GPU" ]] || die "ORT_GPU_DIR=$ORT_GPU_DIR has no libonnxruntime.so.1.31.1"
fi
command -v "$TORCH_PYTHON" >/dev/null && "$TORCH_PYTHON" -c 'import torch' 2>/dev/null || TORCH_PYTHON=""
WRK="$(command -v wrk || true)"; [[ -x "$BIN/wrk" ]] && WRK="$BIN/wrk"
PYBENCH="$root/scripts/bench_torch_step.py"; [[ -n "$FROM" ]] && PYBENCH="$FROM/scripts/bench_torch_step.py"

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
work="$(mktemp -d)"
server_pid=""
trap '[[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
report="$OUT/REPORT.md"
say() { echo "$*" >>"$report"; }
: >"$report"

# --- 1. the machine -----------------------------------------------------------------
say "# GPU proof ($(date -u +%Y-%m-%dT%H:%MZ), mode $MODE, device $DEVICE)"
say
if command -v nvidia-smi >/dev/null; then
    say "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
else
    say "- no nvidia-smi: no GPU here"
fi
torch_version=none
[[ -n "$TORCH_PYTHON" ]] && torch_version=$("$TORCH_PYTHON" -c 'import torch; print(torch.__version__, "with CUDA" if torch.cuda.is_available() else "without CUDA")')
say "- CPU: $(nproc) cores; PyTorch: $torch_version"
say

# The peak GPU memory of a process while it runs (MiB), by polling nvidia-smi.
gpu_peak() {  # PID
    local peak=0 m
    command -v nvidia-smi >/dev/null || { echo "—"; return; }
    while kill -0 "$1" 2>/dev/null; do
        m=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null | awk -F', ' -v p="$1" '$1==p {print $2}')
        [[ -n "$m" && "$m" -gt "$peak" ]] && peak=$m
        sleep 0.2
    done
    echo "$peak"
}

# canard-train's images/s over its loop (from losses.csv), skipping the first tenth (warm-up).
loop_rate() {  # losses.csv batch
    python3 - "$1" "$2" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
t = [float(r["seconds"]) for r in rows]
k = max(1, len(t) // 10)
print(f"{int(sys.argv[2]) * (len(t) - k) / (t[-1] - t[k - 1]):.1f}")
PY
}

train() {  # name, then canard-train flags
    local name="$1"; shift
    "$BIN/canard-train" --device "$DEVICE" --data builtin:shapes --name "$name" --runs-dir "$work/runs" \
        --models-dir "$work/models" "$@" >"$work/$name.log" 2>&1 &
    local pid=$!
    local peak; peak=$(gpu_peak "$pid")
    wait "$pid" || { tail -20 "$work/$name.log" >&2; die "canard-train $name failed (log above)"; }
    echo "$peak"
}

# --- 2. training that learns ---------------------------------------------------------
say "## Training that learns (builtin:shapes, 32×32, $LEARN_STEPS steps)"
say
say "| arch | command | steps | images/s | SWD ×10³ | samples |"
say "|---|---|---|---|---|---|"
for run in fastgan fastgan-r1 dcgan wgan-gp; do
    arch=${run%-r1}
    log "learning run: $run"
    flags=(--arch "$arch" --image-size 32 --steps "$LEARN_STEPS" --eval-images 2048)
    [[ $run == *-r1 ]] && flags+=(--r1 1)
    train "learn-$run" "${flags[@]}" >/dev/null
    swd=$(sed -n 's/.*SWD ×10³ \([0-9.]*\).*/\1/p' "$work/learn-$run.log" | tail -1)
    last=$(ls "$work/runs/learn-$run/samples" | sort | tail -1)
    cp "$work/runs/learn-$run/samples/$last" "$OUT/learn-$run.png"
    say "| $run | \`canard-train --device $DEVICE --data builtin:shapes ${flags[*]}\` | $LEARN_STEPS | $(loop_rate "$work/runs/learn-$run/losses.csv" 64) | ${swd:-—} | learn-$run.png |"
done
say

# --- 5a and 3. the server, on each provider ------------------------------------------
start_server() {  # ort library, --device value
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    ORT_DYLIB_PATH="$1" "$BIN/canard-serve" --models "$work/models" --model learn-dcgan --device "$2" \
        --bind "127.0.0.1:$port" >"$work/serve-$2.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 && { echo "$port"; return; }
        sleep 0.2
    done
    tail -20 "$work/serve-$2.log" >&2
    die "canard-serve --device $2 did not get ready"
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; }

providers=(cpu); [[ -n "$ORT_GPU" ]] && providers+=(cuda)
for p in "${providers[@]}"; do
    lib="$ORT_CPU"; [[ "$p" == cuda ]] && lib="$ORT_GPU"
    port=$(start_server "$lib" "$p")
    mkdir -p "$work/served-$p"
    for s in $(seq 0 63); do curl -fs "127.0.0.1:$port/generate?seed=$s" -o "$work/served-$p/$s.png"; done
    stop_server
done

say "## Export parity (the $DEVICE-trained DCGAN's 64 preview seeds)"
say
python3 - "$work/runs/learn-dcgan/samples" "$work" "${providers[@]}" >>"$report" <<'PY'
import os, struct, sys, zlib
def png(path):
    data = open(path, "rb").read()
    pos, w, h, ct, idat = 8, 0, 0, 0, b""
    while pos < len(data):
        n, t = struct.unpack(">I4s", data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
        if t == b"IHDR": w, h, _, ct = struct.unpack(">IIBB", body[:10])
        elif t == b"IDAT": idat += body
    bpp = {0: 1, 2: 3, 6: 4}[ct]; raw = zlib.decompress(idat); stride = w * bpp; rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0; b = prev[i]; c = prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line)); prev = line
    return w, h, bpp, rows
samples, work, providers = sys.argv[1], sys.argv[2], sys.argv[3:]
grid = png(os.path.join(samples, sorted(os.listdir(samples))[-1]))
def tile(seed):
    _, _, bpp, rows = grid; s = 32; x0, y0 = 2 + (seed % 8) * (s + 2), 2 + (seed // 8) * (s + 2)
    return [rows[y0 + y][x0 * bpp:(x0 + s) * bpp] for y in range(s)], bpp
def diff(a, b):
    (ra, ba), (rb, bb) = a, b
    return max(abs(ra[y][x * ba + c] - rb[y][x * bb + c]) for y in range(len(ra)) for x in range(len(ra[0]) // ba) for c in range(min(ba, bb, 3)))
served = {p: [png(os.path.join(work, f"served-{p}", f"{s}.png")) for s in range(64)] for p in providers}
print("| comparison | max abs diff (8-bit levels), 64 seeds |\n|---|---|")
for p in providers:
    print(f"| trainer's preview (candle) vs canard-serve, {p} provider | {max(diff(tile(s), (served[p][s][3], served[p][s][2])) for s in range(64))} |")
if len(providers) == 2:
    print(f"| canard-serve cuda vs cpu provider | {max(diff((served['cuda'][s][3], served['cuda'][s][2]), (served['cpu'][s][3], served['cpu'][s][2])) for s in range(64))} |")
print()
PY

# --- 4. training speed ---------------------------------------------------------------
say "## Training speed: DCGAN, ngf = ndf = 64, $STEPS steps each"
say
say "| size | batch | canard images/s | canard peak GPU MiB | PyTorch images/s | PyTorch peak GPU MiB | ratio |"
say "|---|---|---|---|---|---|---|"
for case in "64 64" "64 256" "128 64"; do
    read -r size batch <<<"$case"
    log "speed: ${size}×${size}, batch $batch"
    name="speed-$size-$batch"
    peak=$(train "$name" --arch dcgan --image-size "$size" --batch-size "$batch" --steps "$STEPS" --eval-images 0 --log-every 1000000)
    ours=$(loop_rate "$work/runs/$name/losses.csv" "$batch")
    theirs="—"; tpeak="—"; ratio="—"
    if [[ -n "$TORCH_PYTHON" ]]; then
        j=$("$TORCH_PYTHON" "$PYBENCH" --device "$DEVICE" --image-size "$size" --batch "$batch" --steps "$STEPS" --threads "$(nproc)")
        theirs=$(python3 -c 'import json,sys; print("%.1f" % json.loads(sys.argv[1])["images_per_s"])' "$j")
        tpeak=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("peak_gpu_mib") or "—")' "$j")
        ratio=$(python3 -c "print(f'{$ours / $theirs:.2f}')")
    fi
    say "| ${size}×${size} | $batch | $ours | $peak | $theirs | $tpeak | $ratio |"
done
say

# --- 5. serving speed ----------------------------------------------------------------
say "## Serving: raw ONNX Runtime (the DCGAN above, 32×32), images/s"
say
say "| batch | $(printf '%s provider | ' "${providers[@]}")"
say "|---|$(printf -- '---|%.0s' "${providers[@]}")"
for batch in 1 16 64 256; do
    row="| $batch |"
    for p in "${providers[@]}"; do
        lib="$ORT_CPU"; [[ "$p" == cuda ]] && lib="$ORT_GPU"
        r=$(ORT_DYLIB_PATH="$lib" "$RAW_ORT" --model "$work/models/learn-dcgan" --batch "$batch" --seconds "$SECONDS_EACH" \
            --provider "$p" | sed -n 's/^RESULT.* images_per_s=\([0-9.]*\).*/\1/p')
        row="$row ${r:-failed} |"
    done
    say "$row"
done
say
if [[ -n "$WRK" ]]; then
    say "## Serving: canard-serve under wrk (distinct seed per request), ${SECONDS_EACH} s each"
    say
    say "| provider | connections | requests/s | p50 | p99 | non-2xx |"
    say "|---|---|---|---|---|---|"
    cat >"$work/seeds.lua" <<'LUA'
local n = 0
request = function() n = n + 1; return wrk.format("GET", "/generate?seed=" .. (n * 7919 + math.random(1000000))) end
done = function(summary, latency, requests)
  io.write(string.format("WRK %.1f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
LUA
    for p in "${providers[@]}"; do
        lib="$ORT_CPU"; [[ "$p" == cuda ]] && lib="$ORT_GPU"
        port=$(start_server "$lib" "$p")
        for c in 1 16 64 256; do
            threads=$(( c < $(nproc) ? c : $(nproc) ))
            read -r rps p50 p99 bad < <("$WRK" -t "$threads" -c "$c" -d "${SECONDS_EACH}s" -s "$work/seeds.lua" \
                "http://127.0.0.1:$port" | sed -n 's/^WRK //p')
            say "| $p | $c | $rps | $p50 ms | $p99 ms | $bad |"
        done
        stop_server
    done
else
    say "(no wrk here: the server load test was skipped)"
fi
[[ -n "$ORT_GPU" || "$MODE" == cpu ]] || say "
ONNX Runtime's CUDA provider was not found (ORT_GPU_DIR): the CUDA serving rows are missing."
log "report: $report"
cat "$report"
