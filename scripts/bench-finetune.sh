#!/usr/bin/env bash
# Fine-tuning against training from scratch, at equal wall-clock time (QUALITY.md): fastgan
# trained --pretrain minutes on a larger folder (Twitter's emoji without their food drawings,
# 3,655), then on the small one (the 131 food drawings) for each of --minutes: from that run
# (--init-from), the same with --freeze-d 2, and from random weights; and from random weights
# for the pretraining's minutes plus the budget. Each run's SWD ×10³ is what its export
# measured: 2,048 generated pictures against the food folder. Grids stay in --out.
# The folders come from scripts/quality_data.py (needs npm and Pillow).
#
# Usage: scripts/bench-finetune.sh [--data-dir .deps/quality-data] [--pretrain 4] [--minutes "1 2"]
#        [--size 32] [--out runs/bench/finetune]
set -euo pipefail

DATA_DIR=.deps/quality-data
PRETRAIN=4
MINUTES="1 2"
SIZE=32
OUT=runs/bench/finetune
die() { echo "bench-finetune: error: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data-dir) DATA_DIR="${2:?--data-dir needs a path}"; shift 2 ;;
        --pretrain) PRETRAIN="${2:?--pretrain needs minutes}"; shift 2 ;;
        --minutes) MINUTES="${2:?--minutes needs a value}"; shift 2 ;;
        --size) SIZE="${2:?--size needs a value}"; shift 2 ;;
        --out) OUT="${2:?--out needs a path}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
for m in $PRETRAIN $MINUTES; do
    python3 -c "import sys; m = float(sys.argv[1]); assert 0 < m < 1e6" "$m" 2>/dev/null || die "minutes must be positive, not $m"
done
[[ -d "$DATA_DIR/twemoji" && -d "$DATA_DIR/twemoji-food" ]] \
    || die "$DATA_DIR lacks twemoji and twemoji-food: run scripts/quality_data.py $DATA_DIR --sets twemoji,twemoji-food"
# The larger folder: every drawing that is not a food one.
nofood="$DATA_DIR/twemoji-nofood"
if [[ ! -d "$nofood" ]]; then
    mkdir -p "$nofood"
    comm -23 <(ls "$DATA_DIR/twemoji" | sort) <(ls "$DATA_DIR/twemoji-food" | sort) \
        | while read -r f; do ln -s "$(cd "$DATA_DIR/twemoji" && pwd)/$f" "$nofood/$f"; done
fi

cargo build --release --quiet -p canard-train --bin canard-train
bin=target/release/canard-train
train() { # NAME DATA MINUTES [FLAGS...]: trains, prints the export's SWD
    local name=$1 data=$2 minutes=$3
    shift 3
    "$bin" --data "$data" --name "$name" --image-size "$SIZE" --minutes "$minutes" --steps 99999999 --seed 0 --fresh \
        --runs-dir "$OUT/runs" --models-dir "$OUT/models" "$@" >"$OUT/$name.log" 2>&1 \
        || die "$name failed: see $OUT/$name.log"
    python3 -c "import json, sys; print(f\"{json.load(open(sys.argv[1]))['training']['quality']['swd']:.1f}\")" \
        "$OUT/models/$name/model.json"
}
mkdir -p "$OUT"
echo "bench-finetune: pretraining $PRETRAIN minutes on $(ls "$nofood" | wc -l) drawings" >&2
train source "$nofood" "$PRETRAIN" >/dev/null
echo "| minutes on food | from the larger folder | with --freeze-d 2 | from scratch | from scratch, $PRETRAIN + minutes |"
echo "|---|---:|---:|---:|---:|"
for m in $MINUTES; do
    tuned=$(train "tuned-$m" "$DATA_DIR/twemoji-food" "$m" --init-from "$OUT/runs/source")
    frozen=$(train "frozen-$m" "$DATA_DIR/twemoji-food" "$m" --init-from "$OUT/runs/source" --freeze-d 2)
    scratch=$(train "scratch-$m" "$DATA_DIR/twemoji-food" "$m")
    total=$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$PRETRAIN" "$m")
    longer=$(train "scratch-total-$m" "$DATA_DIR/twemoji-food" "$total")
    echo "| $m | $tuned | $frozen | $scratch | $longer |"
done
