#!/usr/bin/env bash
# One model of several classes against one model of everything, at equal wall-clock time
# (QUALITY.md): fastgan trained --minutes on each sorted folder with --classes subfolders and
# without. Per class, the SWD ×10³ of 512 generated pictures against that class's own
# pictures: the conditional model's pictures of the class, the unconditional model's pictures
# (of any class). On the digits, how often a classifier trained on the real digits
# (scikit-learn's SVC, in this script) names the class that was asked for, over 100 pictures
# of each digit. Grids of a row per class, and the logs, stay in --out. The folders come from
# scripts/quality_data.py (--sets digits-classes,twemoji-classes; needs npm, scikit-learn and
# Pillow in --python).
#
# Usage: scripts/bench-classes.sh [--data-dir .deps/quality-data] [--minutes 5] [--size 32]
#        [--sets "digits-classes twemoji-classes"] [--out runs/bench/classes]
#        [--bin target/release/canard-train] [--python python3]
set -euo pipefail

DATA_DIR=.deps/quality-data
MINUTES=5
SIZE=32
SETS="digits-classes twemoji-classes"
OUT=runs/bench/classes
BIN=""
PYTHON=python3
die() { echo "bench-classes: error: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data-dir) DATA_DIR="${2:?--data-dir needs a path}"; shift 2 ;;
        --minutes) MINUTES="${2:?--minutes needs a value}"; shift 2 ;;
        --size) SIZE="${2:?--size needs a value}"; shift 2 ;;
        --sets) SETS="${2:?--sets needs a value}"; shift 2 ;;
        --out) OUT="${2:?--out needs a path}"; shift 2 ;;
        --bin) BIN="${2:?--bin needs a path}"; shift 2 ;;
        --python) PYTHON="${2:?--python needs a path}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
python3 -c "import sys; m = float(sys.argv[1]); assert 0 < m < 1e6" "$MINUTES" 2>/dev/null \
    || die "--minutes must be a positive number, not $MINUTES"
for set in $SETS; do
    [[ -d "$DATA_DIR/$set" ]] || die "$DATA_DIR/$set is missing: run scripts/quality_data.py $DATA_DIR --sets $set"
done
"$PYTHON" -c "import sklearn, PIL" 2>/dev/null || die "$PYTHON lacks scikit-learn or Pillow (--python)"

if [[ -z "$BIN" ]]; then
    cargo build --release --quiet -p canard-train --bin canard-train
    BIN=target/release/canard-train
fi
mkdir -p "$OUT"
train() { # NAME DATA [FLAGS...]: trains for --minutes
    local name=$1 data=$2
    shift 2
    "$BIN" --data "$data" --name "$name" --image-size "$SIZE" --minutes "$MINUTES" --steps 99999999 --seed 0 --fresh \
        --runs-dir "$OUT/runs" --models-dir "$OUT/models" "$@" >"$OUT/$name.log" 2>&1 \
        || die "$name failed: see $OUT/$name.log"
}
swd() { # eval's mean SWD, from its arguments
    "$BIN" eval --images 512 --nearest "$OUT/nearest.png" "$@" 2>/dev/null | awk '$1 == "mean" { print $2; exit }'
}

for set in $SETS; do
    data="$DATA_DIR/$set"
    echo "bench-classes: $set, $MINUTES minutes each" >&2
    train "$set-one" "$data"
    train "$set-classes" "$data" --classes subfolders
    echo
    echo "$set ($MINUTES minutes each, ${SIZE}×${SIZE}), SWD ×10³ against each class's pictures:"
    echo
    echo "| class | pictures | with --classes | without |"
    echo "|---|---:|---:|---:|"
    rows=()
    for dir in "$data"/*/; do
        class=$(basename "$dir")
        n=$(find "$dir" -type f | wc -l)
        cond=$(swd --model "$OUT/models/$set-classes" --data "$data" --class "$class")
        plain=$(swd --model "$OUT/models/$set-one" --data "$dir")
        echo "| $class | $n | $cond | $plain |"
        "$BIN" sample --model "$OUT/models/$set-classes" --class "$class" --seeds 0-99 --out "$OUT/samples/$set/$class" \
            >/dev/null
        rows+=("$OUT/samples/$set/$class")
    done
    # A row of 8 per class: seeds 0-7 of each.
    "$PYTHON" - "$OUT/$set-grid.png" "${rows[@]}" <<'EOF'
import sys
from PIL import Image
out, rows = sys.argv[1], sys.argv[2:]
tiles = [[Image.open(f"{r}/seed_{s}.png").convert("RGB") for s in range(8)] for r in rows]
side, pad = tiles[0][0].width, 2
grid = Image.new("RGB", (8 * (side + pad) + pad, len(rows) * (side + pad) + pad))
for y, row in enumerate(tiles):
    for x, t in enumerate(row):
        grid.paste(t, (pad + x * (side + pad), pad + y * (side + pad)))
grid.save(out)
EOF
    echo
    echo "grid of a row per class: $OUT/$set-grid.png"
    if [[ "$set" == digits* ]]; then
        "$PYTHON" - "$OUT/samples/$set" <<'EOF'
import pathlib, sys
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

d = load_digits()
x_train, x_test, y_train, y_test = train_test_split(d.data, d.target, test_size=0.25, random_state=0)
held_out = SVC(gamma=0.001).fit(x_train, y_train).score(x_test, y_test)
clf = SVC(gamma=0.001).fit(d.data, d.target)
root = pathlib.Path(sys.argv[1])
right = total = 0
for folder in sorted(root.iterdir()):
    for png in folder.glob("seed_*.png"):
        # As the digits were made: 8×8, values 0..16, ink high.
        small = np.asarray(Image.open(png).convert("L").resize((8, 8), Image.BOX), dtype=np.float64) * 16 / 255
        right += int(clf.predict(small.reshape(1, -1))[0]) == int(folder.name)
        total += 1
print(f"\nThe classifier (SVC on the 1,797 real digits; {held_out:.1%} on a quarter held out) names the asked-for "
      f"digit for {right} of {total} generated pictures: {right / total:.1%}.")
EOF
    fi
done
