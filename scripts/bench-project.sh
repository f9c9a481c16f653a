#!/usr/bin/env bash
# Projection against picking a seed (QUALITY.md): for each of --count pictures of a folder the
# model never trained on, `canard-train project` (the best of 256 seeds, then 300 steps of
# Adam on z) and the best of --seeds random seeds by the same distance (`project --steps 0`).
# Prints the mean error per pixel value (of 255) and the SWD ×10³ of each set of pictures
# against the photos (`canard-train eval --generated`). Pictures stay in --out.
#
# Usage: scripts/bench-project.sh --model models/NAME --photos DIR [--count 50] [--seeds 10000]
#        [--out runs/bench/project]
set -euo pipefail

MODEL=""
PHOTOS=""
COUNT=50
SEEDS=10000
OUT=runs/bench/project
die() { echo "bench-project: error: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) MODEL="${2:?--model needs a path}"; shift 2 ;;
        --photos) PHOTOS="${2:?--photos needs a path}"; shift 2 ;;
        --count) COUNT="${2:?--count needs a value}"; shift 2 ;;
        --seeds) SEEDS="${2:?--seeds needs a value}"; shift 2 ;;
        --out) OUT="${2:?--out needs a path}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
[[ -f "$MODEL/model.json" ]] || die "--model must be a model folder (models/NAME), not '$MODEL'"
[[ -d "$PHOTOS" ]] || die "--photos must be a folder of pictures, not '$PHOTOS'"
[[ "$COUNT" =~ ^[1-9][0-9]*$ && "$SEEDS" =~ ^[1-9][0-9]*$ ]] || die "--count and --seeds must be positive whole numbers"

cargo build --release --quiet -p canard-train --bin canard-train
bin=target/release/canard-train
size=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['image_size'])" "$MODEL/model.json")
rm -rf "$OUT" && mkdir -p "$OUT/photos" "$OUT/search" "$OUT/seeds" "$OUT/search-made" "$OUT/seeds-made"
mapfile -t photos < <(find "$PHOTOS" -maxdepth 1 -name '*.png' | sort | head -n "$COUNT")
[[ ${#photos[@]} -gt 0 ]] || die "no .png pictures in $PHOTOS"
for p in "${photos[@]}"; do
    stem=$(basename "$p" .png)
    cp "$p" "$OUT/photos/"
    "$bin" project --model "$MODEL" --image "$p" --out "$OUT/search" >/dev/null
    "$bin" project --model "$MODEL" --image "$p" --out "$OUT/seeds" --steps 0 --seeds "$SEEDS" >/dev/null
    for way in search seeds; do cp "$OUT/$way/project_${stem}_projection.png" "$OUT/$way-made/$stem.png"; done
done
error() { python3 -c "import json, sys; v = [json.load(open(f))['pixel_error'] for f in sys.argv[1:]]; print(f'{sum(v) / len(v):.1f}')" "$OUT/$1"/*.json; }
swd() { "$bin" eval --generated "$OUT/$1-made" --image-size "$size" --data "$OUT/photos" --nearest "$OUT/$1-nearest.png" | awk '$1 == "mean" { printf "%.1f\n", $2 }'; }
echo "| ${#photos[@]} pictures the model never saw | mean error per pixel value (of 255) | SWD ×10³ against the photos |"
echo "|---|---:|---:|"
echo "| best of $SEEDS seeds | $(error seeds) | $(swd seeds) |"
echo "| project (best of 256 seeds, 300 steps) | $(error search) | $(swd search) |"
