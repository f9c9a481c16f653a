#!/usr/bin/env python3
"""Real picture folders for scripts/bench-quality.sh, from what registry packages ship.

- digits: scikit-learn's bundled handwritten digits (1,797 8×8 grey pictures; needs
  scikit-learn in this Python).
- twemoji: Twitter's emoji at 64×64 (3,786 colour drawings, CC-BY 4.0), from the npm package
  emoji-datasource-twitter 16.0.0 (`npm pack`, so npm must be on PATH).
- twemoji-food: the 131 of them in the "Food & Drink" category: a small folder.
- digits-classes, twemoji-classes: the same pictures sorted into a subfolder per class, for
  `--classes subfolders`: the ten digits; four emoji categories (smileys, animals, food, flags).

Usage: scripts/quality_data.py OUT_DIR [--sets digits,twemoji,twemoji-food]
Folders that already hold pictures are left alone.
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

NPM_PACKAGE = "emoji-datasource-twitter@16.0.0"


# twemoji-classes: emoji.json's category → subfolder.
CATEGORIES = {"Smileys & Emotion": "smileys", "Animals & Nature": "animals", "Food & Drink": "food", "Flags": "flags"}


def digits(out: pathlib.Path, by_class: bool = False) -> int:
    from sklearn.datasets import load_digits
    import numpy as np
    from PIL import Image

    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        # Values 0..16, ink high: white ink on black, as MNIST.
        pixels = np.clip(img * 16, 0, 255).astype(np.uint8)
        folder = out / str(label) if by_class else out
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels, mode="L").save(folder / f"{label}_{i:04d}.png")
    return len(d.images)


def twemoji(out_all, out_food, out_classes=None) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        tgz = next(pathlib.Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as t:
            meta = json.load(t.extractfile("package/emoji.json"))
            food = {e["image"] for e in meta if e.get("has_img_twitter") and e["category"] == "Food & Drink"}
            category = {e["image"]: CATEGORIES.get(e["category"]) for e in meta if e.get("has_img_twitter")}
            n_all = n_food = 0
            for m in t.getmembers():
                if not (m.isfile() and m.name.startswith("package/img/twitter/64/") and m.name.endswith(".png")):
                    continue
                name = pathlib.Path(m.name).name
                data = t.extractfile(m).read()
                if out_all is not None:
                    (out_all / name).write_bytes(data)
                    n_all += 1
                if out_food is not None and name in food:
                    (out_food / name).write_bytes(data)
                    n_food += 1
                if out_classes is not None and category.get(name):
                    (out_classes / category[name]).mkdir(exist_ok=True)
                    (out_classes / category[name] / name).write_bytes(data)
    return n_all, n_food


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--sets", default="digits,twemoji,twemoji-food")
    args = ap.parse_args()
    wanted = set(args.sets.split(","))
    unknown = wanted - {"digits", "twemoji", "twemoji-food", "digits-classes", "twemoji-classes"}
    if unknown:
        sys.exit(f"quality_data: unknown set(s) {sorted(unknown)}")

    def fresh(name: str) -> pathlib.Path | None:
        d = args.out / name
        if name not in wanted or (d.is_dir() and any(d.iterdir())):
            return None
        d.mkdir(parents=True, exist_ok=True)
        return d

    if (d := fresh("digits")) is not None:
        print(f"digits: {digits(d)} pictures in {d}")
    if (d := fresh("digits-classes")) is not None:
        print(f"digits-classes: {digits(d, by_class=True)} pictures in {d}")
    a, f, c = fresh("twemoji"), fresh("twemoji-food"), fresh("twemoji-classes")
    if a is not None or f is not None or c is not None:
        if shutil.which("npm") is None:
            sys.exit("quality_data: npm is needed for the twemoji sets")
        n_all, n_food = twemoji(a, f, c)
        print(f"twemoji: {n_all} pictures; twemoji-food: {n_food} pictures")


if __name__ == "__main__":
    main()
