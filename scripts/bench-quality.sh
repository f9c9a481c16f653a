#!/usr/bin/env bash
# Picture quality at equal wall-clock time: every canard arch and the reference (the
# pytorch/examples DCGAN recipe, scripts/reference_dcgan.py; `reference-fastgan` is canard's
# fastgan written in PyTorch, scripts/reference_fastgan.py) trained for the same minutes on
# the same folders, then the SWD of 2,048 generated pictures against the data
# (`canard-train eval`, the same code for all), and each sample grid kept as a PNG.
# Prints a Markdown table (QUALITY.md) and copies every grid and nearest.png to --grids
# (default runs/bench/quality, ignored by git). --refresh-docs also copies the first seed's
# fastgan grid and nearest.png and reference grid into docs/quality/, the pictures QUALITY.md shows.
#
# Sets: shapes (builtin:shapes, 32×32; canard only: the reference needs a folder),
# digits (scikit-learn's 1,797, 32×32 grey), twemoji-food (131 colour drawings, 32×32),
# twemoji (3,786 colour drawings, 32×32); made by scripts/quality_data.py (needs
# scikit-learn and npm).
#
# Usage: scripts/bench-quality.sh --python PY [--minutes 10] [--sets "shapes digits twemoji-food twemoji"]
#        [--archs "fastgan dcgan wgan-gp reference"] (also: wgan, reference-fastgan, fastgan-ada) [--data-dir .deps/quality-data]
#        [--grids runs/bench/quality] [--refresh-docs] [--threads 2] [--seeds "0"]
#   --seeds "0 1 2"  one run per seed for every cell (a row each, then the cell's mean): one run's
#                 SWD moves ±10% within a few hundred steps, so one seed decides less than it seems
#   --python PY   a Python with torch, scikit-learn and Pillow (the reference, and the digits set)
set -euo pipefail

MINUTES=10
SETS="shapes digits twemoji-food twemoji"
ARCHS="fastgan dcgan wgan-gp reference"
DATA_DIR=.deps/quality-data
GRIDS=runs/bench/quality
DOCS=docs/quality
REFRESH_DOCS=0
THREADS=2
SEEDS=0
PY=""
die() { echo "bench-quality: error: $*" >&2; exit 1; }
log() { echo "bench-quality: $*" >&2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) PY="${2:?--python needs a path}"; shift 2 ;;
        --minutes) MINUTES="${2:?--minutes needs a value}"; shift 2 ;;
        --sets) SETS="${2:?--sets needs a value}"; shift 2 ;;
        --archs) ARCHS="${2:?--archs needs a value}"; shift 2 ;;
        --data-dir) DATA_DIR="${2:?--data-dir needs a path}"; shift 2 ;;
        --grids) GRIDS="${2:?--grids needs a path}"; shift 2 ;;
        --refresh-docs) REFRESH_DOCS=1; shift ;;
        --threads) THREADS="${2:?--threads needs a value}"; shift 2 ;;
        --seeds) SEEDS="${2:?--seeds needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
python3 -c "import sys; m = float(sys.argv[1]); assert m > 0 and m < 1e6" "$MINUTES" 2>/dev/null \
    || die "--minutes must be a positive number, not $MINUTES"
for seed in $SEEDS; do [[ "$seed" =~ ^[0-9]+$ ]] || die "--seeds must be whole numbers, not $seed"; done
[[ -n "${SEEDS// /}" ]] || die "--seeds needs at least one seed"
read -r first_seed _ <<<"$SEEDS"
[[ -n "$PY" ]] || die "--python is required (a Python with torch, scikit-learn and Pillow)"
"$PY" -c "import torch, sklearn, PIL" 2>/dev/null || die "$PY lacks torch, scikit-learn or Pillow"

cargo build --release --quiet -p canard-train --bin canard-train
bin=target/release/canard-train
folder_sets=$(tr ' ' '\n' <<<"$SETS" | grep -v '^shapes$' | paste -sd, - || true)
[[ -z "$folder_sets" ]] || "$PY" scripts/quality_data.py "$DATA_DIR" --sets "$folder_sets" >&2
mkdir -p "$GRIDS"
[[ "$REFRESH_DOCS" == 0 ]] || mkdir -p "$DOCS"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "| set | pictures | arch | steps | images seen | SWD ×10³ | grid |"
echo "|---|---|---|---|---|---|---|"
for set in $SETS; do
    case "$set" in
        shapes) data=builtin:shapes; channels=3 ;;
        digits) data="$DATA_DIR/digits"; channels=1 ;;
        twemoji|twemoji-food) data="$DATA_DIR/$set"; channels=3 ;;
        *) die "unknown set $set" ;;
    esac
    for arch in $ARCHS; do
      swds=()
      for seed in $SEEDS; do
        name="$set-$arch"
        [[ "$seed" == 0 ]] || name="$set-$arch-seed$seed"
        log "$name: $MINUTES minutes"
        if [[ "$arch" == reference* ]]; then
            [[ "$set" != shapes ]] || { log "skipping $arch on builtin:shapes (it needs a folder)"; continue; }
            case "$arch" in
                reference) script=scripts/reference_dcgan.py ;;
                reference-fastgan) script=scripts/reference_fastgan.py ;;
                *) die "unknown arch $arch" ;;
            esac
            "$PY" "$script" --data "$data" --out "$tmp/$name" --minutes "$MINUTES" --seed "$seed" \
                --image-size 32 --channels "$channels" --threads "$THREADS" > "$tmp/$name.json"
            read -r steps seen pictures < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["steps"], s["images_seen"], s["pictures"])' "$tmp/$name.json")
            swd=$("$bin" eval --generated "$tmp/$name/generated" --image-size 32 --channels "$channels" --data "$data" \
                --nearest "$tmp/$name-nearest.png" | awk '/^ *mean/ {print $2}')
            cp "$tmp/$name/grid.png" "$GRIDS/$name.png"
        else
            # fastgan-ada: fastgan with ADA's adaptive augmentation probability (target 0.6).
            arch_args=(--arch "$arch")
            [[ "$arch" != fastgan-ada ]] || arch_args=(--arch fastgan --ada-target 0.6)
            RAYON_NUM_THREADS="$THREADS" "$bin" --data "$data" --name "$name" "${arch_args[@]}" --image-size 32 \
                --channels "$channels" --minutes "$MINUTES" --seed "$seed" --runs-dir "$tmp/runs" --models-dir "$tmp/models" \
                --eval-images 0 > "$tmp/$name.log" 2>&1 || { tail "$tmp/$name.log" >&2; die "$name failed"; }
            read -r steps seen pictures < <(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["training"]; print(t["steps"], t["images_seen"], t["dataset_images"])' "$tmp/models/$name/model.json")
            swd=$("$bin" eval --model "$tmp/models/$name" --data "$data" --nearest "$tmp/$name-nearest.png" \
                | awk '/^ *mean/ {print $2}')
            cp "$(ls "$tmp/runs/$name/samples/"step_*.png | tail -1)" "$GRIDS/$name.png"
        fi
        cp "$tmp/$name-nearest.png" "$GRIDS/$name-nearest.png"
        if [[ "$REFRESH_DOCS" == 1 && "$seed" == "$first_seed" && ( "$arch" == fastgan || "$arch" == reference ) ]]; then
            cp "$GRIDS/$name.png" "$DOCS/$set-$arch.png"
            [[ "$arch" != fastgan ]] || cp "$GRIDS/$name-nearest.png" "$DOCS/$set-$arch-nearest.png"
            log "$name: refreshed $DOCS/$set-$arch.png"
        fi
        swds+=("$swd")
        echo "| $set | $pictures | $arch (seed $seed) | $steps | $seen | $swd | [grid]($GRIDS/$name.png), [nearest]($GRIDS/$name-nearest.png) |"
      done
      if [[ ${#swds[@]} -gt 1 ]]; then
          mean=$(printf '%s\n' "${swds[@]}" | awk '{s += $1; if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1} END {printf "%.1f (%.1f–%.1f)", s / NR, lo, hi}')
          echo "| $set | | **$arch, mean of ${#swds[@]} seeds** | | | **$mean** | |"
      fi
    done
done
