#!/usr/bin/env python3
"""The reference for scripts/bench-quality.sh: pytorch/examples' `dcgan` recipe, written
for canard from Radford et al. (2016) and that example's published settings, trained on a
folder for a fixed number of wall-clock minutes, then sampled.

Recipe: G = transposed convolutions 4×4 (stride 1 from the 1×1 latent, then stride 2),
BatchNorm + ReLU between them, Tanh out, widths ngf·2^k; D = the mirror with strided
convolutions, LeakyReLU(0.2), BatchNorm on all but the first, a 4×4 convolution to one logit;
weights N(0, 0.02), BatchNorm γ ~ N(1, 0.02), β = 0; Adam lr 2e-4, β (0.5, 0.999); batch 64;
nz 100; binary cross-entropy, the generator's non-saturating loss; one D and one G update per
step. The example is 64×64; at 32×32 one stage fewer (as canard's dcgan).

Pictures: every PNG/JPEG under --data, centre-cropped square, resized (antialiased) to
--image-size, transparency put on white, grey with --channels 1; [-1, 1].

Writes OUT/generated/NNNN.png (--samples pictures from fixed noise), OUT/grid.png (the first
64, 8 to a row) and OUT/stats.json (steps, images seen, seconds).

Usage: reference_dcgan.py --data DIR --out DIR --minutes M [--image-size 32] [--channels 3]
                          [--threads 2] [--samples 2048] [--seed 0]
"""
import argparse
import json
import math
import pathlib
import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from arguments import positive


def load(folder: pathlib.Path, size: int, channels: int) -> torch.Tensor:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not files:
        raise SystemExit(f"reference_dcgan: no pictures under {folder}")
    out = []
    for p in files:
        img = Image.open(p)
        if img.mode in ("RGBA", "LA", "P"):
            img = img.convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img)
        img = img.convert("L" if channels == 1 else "RGB")
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        img = img.resize((size, size), Image.Resampling.LANCZOS)
        a = np.asarray(img, dtype=np.float32).reshape(size, size, channels) / 127.5 - 1.0
        out.append(a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def generator(nz: int, ngf: int, nc: int, stages: int) -> nn.Sequential:
    layers, c_in = [], nz
    for i in range(stages):
        c_out = ngf * 2 ** (stages - 1 - i)
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        c_in = c_out
    layers += [nn.ConvTranspose2d(c_in, nc, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def discriminator(ndf: int, nc: int, stages: int) -> nn.Sequential:
    layers, c_in = [], nc
    for i in range(stages):
        c_out = ndf * 2**i
        layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False))
        if i > 0:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        c_in = c_out
    layers += [nn.Conv2d(c_in, 1, 4, 1, 0, bias=False)]
    return nn.Sequential(*layers)


def init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def save(images: torch.Tensor, path: pathlib.Path) -> None:
    a = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).save(path)


def write_samples(g, nz, args, steps, batch, seconds, pictures_in_data) -> None:
    """OUT/generated/NNNN.png (--samples pictures from fixed noise), OUT/grid.png (the first
    64, 8 to a row) and OUT/stats.json; `g` in evaluation mode."""
    size = args.image_size
    out = args.out / "generated"
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        pictures = torch.cat([g(torch.randn(min(256, args.samples - k), nz, 1, 1, generator=gen))
                              for k in range(0, args.samples, 256)])
    for k, p in enumerate(pictures):
        save(p, out / f"{k:04d}.png")
    n = min(64, len(pictures))
    grid = torch.ones(args.channels, 8 * (size + 2) + 2, 8 * (size + 2) + 2)
    for k in range(n):
        r, c = divmod(k, 8)
        grid[:, 2 + r * (size + 2) : 2 + r * (size + 2) + size, 2 + c * (size + 2) : 2 + c * (size + 2) + size] = pictures[k]
    save(grid, args.out / "grid.png")
    stats = {"steps": steps, "images_seen": steps * batch, "seconds": round(seconds, 1), "pictures": pictures_in_data}
    (args.out / "stats.json").write_text(json.dumps(stats))
    print(json.dumps(stats))


def common_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every reference script takes (bench-quality.sh passes them alike)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", type=pathlib.Path, required=True)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--minutes", type=positive(float), required=True)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3, choices=[1, 3])
    ap.add_argument("--threads", type=positive(int), default=2)
    ap.add_argument("--samples", type=positive(int), default=2048)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main() -> None:
    ap = common_arguments(__doc__.splitlines()[0])
    ap.add_argument("--width", type=positive(int), default=64, help="ngf = ndf (the example's 64)")
    args = ap.parse_args()
    size = args.image_size
    stages = int(math.log2(size)) - 2  # 32 → 3, 64 → 4 upsampling stages after the first
    if 2 ** (stages + 2) != size or stages < 2:
        raise SystemExit(f"reference_dcgan: --image-size must be a power of two ≥ 16, not {size}")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = load(args.data, size, args.channels)
    nz, batch = 100, 64
    g = generator(nz, args.width, args.channels, stages)
    d = discriminator(args.width, args.channels, stages)
    g.apply(init)
    d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    steps, start = 0, time.monotonic()
    while time.monotonic() - start < args.minutes * 60:
        perm = torch.randperm(len(data))
        for i in range(0, len(data) - batch + 1 if len(data) >= batch else 1, batch):
            real = data[perm[i : i + batch]]
            b = len(real)
            fake = g(torch.randn(b, nz, 1, 1))
            opt_d.zero_grad()
            loss_d = bce(d(real).view(-1), torch.ones(b)) + bce(d(fake.detach()).view(-1), torch.zeros(b))
            loss_d.backward()
            opt_d.step()
            opt_g.zero_grad()
            loss_g = bce(d(fake).view(-1), torch.ones(b))
            loss_g.backward()
            opt_g.step()
            steps += 1
            if time.monotonic() - start >= args.minutes * 60:
                break
    g.eval()
    write_samples(g, nz, args, steps, batch, time.monotonic() - start, len(data))


if __name__ == "__main__":
    main()
