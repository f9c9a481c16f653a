#!/usr/bin/env python3
"""canard's small-data GAN (`--arch fastgan`) written in PyTorch: the same network, loss and
augmentation, for side-by-side speed and picture benchmarks (scripts/bench-quality.sh
--archs reference-fastgan). Written from the papers, not copied: FastGAN (Liu et al. 2021)
and DiffAugment (Zhao et al. 2020).

Generator: z → ConvTranspose 4×4 to 4×4 (2·w channels), BatchNorm, GLU; then per doubling
nearest-upsample ×2, 3×3 convolution to 2·w', BatchNorm, GLU (widths halving); skip-layer
excitation: the 4×4 (8×8, …) map gates the 32×32 (64×64, …) one through adaptive average
pool to 4×4 → 4×4 convolution → LeakyReLU(0.1) → 1×1 convolution → sigmoid; a 3×3
convolution to the picture's channels, tanh.

Discriminator: every convolution spectrally normalised; 4×4 stride-2 convolutions with
BatchNorm (not the first) and LeakyReLU(0.2) down to 4×4, then a 4×4 convolution to one
logit; hinge loss. Self-supervision (FastGAN): two small decoders (per doubling upsample,
3×3 convolution, BatchNorm, GLU; then 3×3 to the channels, tanh) rebuild the real picture
at half its side (at most 128) from the 8×8 features, and a random quarter of it from the
matching quarter of the 16×16 features; their mean squared error is added to the
discriminator's loss.
DiffAugment (colour, translation, cutout) on everything the discriminator sees. Adam 2e-4,
β (0.5, 0.999), batch 16; weights N(0, 0.02), BatchNorm γ ~ N(1, 0.02); the exported
generator is canard's moving average (half-life 10,000 images, ramped over the first 5%).

Usage: reference_fastgan.py --data DIR --out DIR --minutes M [--image-size 32] [--channels 3]
                            [--ngf 16] [--ndf 32] [--batch 16] [--threads 2] [--samples 2048] [--seed 0]
Writes what reference_dcgan.py writes (OUT/generated/, OUT/grid.png, OUT/stats.json).
"""
import copy
import math
import pathlib
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_torch_step import diff_augment  # noqa: E402
from arguments import positive  # noqa: E402
from reference_dcgan import common_arguments, load, write_samples  # noqa: E402


def glu_block(c_in: int, c_out: int) -> nn.Sequential:
    """Nearest-upsample ×2, 3×3 convolution to 2·c_out, BatchNorm, GLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, 2 * c_out, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(2 * c_out), nn.GLU(dim=1))


class Excitation(nn.Module):
    """Skip-layer excitation: a small map's channel gates for a big one."""

    def __init__(self, c_small: int, c_big: int):
        super().__init__()
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_small, c_big, 4, 1, 0, bias=False),
                                  nn.LeakyReLU(0.1), nn.Conv2d(c_big, c_big, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, small, big):
        return big * self.body(small)


def widths(size: int, base: int) -> dict:
    """Channels per side s (4 … size): base·size/(2s), at most 8·base; DCGAN's widths, and
    base/2 at the picture's own side."""
    return {4 << k: min(base * size // (8 << k), 8 * base) for k in range(int(math.log2(size)) - 1)}


class Generator(nn.Module):
    def __init__(self, size: int, nz: int, ngf: int, nc: int):
        super().__init__()
        self.w = widths(size, ngf)
        self.init = nn.Sequential(nn.ConvTranspose2d(nz, 2 * self.w[4], 4, 1, 0, bias=False),
                                  nn.BatchNorm2d(2 * self.w[4]), nn.GLU(dim=1))
        self.ups = nn.ModuleDict({str(s): glu_block(self.w[s // 2], self.w[s]) for s in self.w if s > 4})
        self.sle = nn.ModuleDict({str(s): Excitation(self.w[s // 8], self.w[s]) for s in self.w if s >= 32})
        self.to_rgb = nn.Conv2d(self.w[size], nc, 3, 1, 1, bias=False)
        self.size = size

    def forward(self, z):
        feats = {4: self.init(z)}
        s = 4
        while s < self.size:
            s *= 2
            x = self.ups[str(s)](feats[s // 2])
            if str(s) in self.sle:
                x = self.sle[str(s)](feats[s // 8], x)
            feats[s] = x
        return torch.tanh(self.to_rgb(feats[self.size]))


def rebuilt_side(size: int) -> int:
    """The side the decoders rebuild pictures at: half the picture's, at most 128."""
    return min(size // 2, 128)


def decoder(c_in: int, ndf: int, nc: int, side: int) -> nn.Sequential:
    """8×8 features → a side×side picture: per doubling glu_block to ndf, ndf/2, … (≥ 1)."""
    layers, c = [], c_in
    for k in range(int(math.log2(side // 8))):
        out = max(ndf >> k, 1)
        layers.append(glu_block(c, out))
        c = out
    return nn.Sequential(*layers, nn.Conv2d(c, nc, 3, 1, 1, bias=False), nn.Tanh())


class Discriminator(nn.Module):
    def __init__(self, size: int, ndf: int, nc: int):
        super().__init__()
        w = widths(size, ndf)
        c_in, s = nc, size
        self.down = nn.ModuleList()
        while s > 4:
            c_out = w[s // 2]
            block = [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False))]
            if s != size:
                block.append(nn.BatchNorm2d(c_out))
            block.append(nn.LeakyReLU(0.2))
            self.down.append(nn.Sequential(*block))
            c_in, s = c_out, s // 2
        self.logit = spectral_norm(nn.Conv2d(c_in, 1, 4, 1, 0, bias=False))
        self.w = w
        self.size = size
        self.dec_all = decoder(w[8], ndf, nc, rebuilt_side(size))
        self.dec_part = decoder(w[16], ndf, nc, rebuilt_side(size))
        for m in list(self.dec_all.modules()) + list(self.dec_part.modules()):
            if isinstance(m, nn.Conv2d):
                spectral_norm(m)

    def forward(self, x, part=None):
        feats, s = {}, self.size
        for block in self.down:
            x = block(x)
            s //= 2
            feats[s] = x
        logit = self.logit(x).view(-1)
        if part is None:
            return logit
        r, c = divmod(part, 2)
        return logit, self.dec_all(feats[8]), self.dec_part(feats[16][:, :, 8 * r:8 * r + 8, 8 * c:8 * c + 8])


def targets(real, part):
    """The decoders' targets: the picture, and its quarter `part`, at rebuilt_side²."""
    size = real.size(2)
    side = rebuilt_side(size)
    fit = lambda x: F.interpolate(x, size=side, mode="nearest") if x.size(2) < side else F.adaptive_avg_pool2d(x, side)
    r, c = divmod(part, 2)
    h = size // 2
    return fit(real), fit(real[:, :, r * h:r * h + h, c * h:c * h + h])


def step(g, d, opt_g, opt_d, real, nz):
    """One training step, as canard's `fastgan_step`: the critic's hinge loss on augmented
    real and generated pictures plus its reconstruction of the real ones, then the
    generator's −mean D(G(z))."""
    fake = g(torch.randn(len(real), nz, 1, 1))
    part = int(torch.randint(0, 4, ()).item())
    real_aug = diff_augment(real, cutout=False)
    logit_real, rec_all, rec_part = d(real_aug, part)
    t_all, t_part = targets(real_aug, part)
    loss_d = (F.relu(1 - logit_real).mean() + F.relu(1 + d(diff_augment(fake.detach(), cutout=False))).mean()
              + F.mse_loss(rec_all, t_all) + F.mse_loss(rec_part, t_part))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = -d(diff_augment(fake, cutout=False)).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item()


def networks(size, nz, ngf, ndf, nc):
    """Both networks, initialised as canard's (weights N(0, 0.02), BatchNorm γ ~ N(1, 0.02)),
    with their Adam optimisers."""
    g = Generator(size, nz, ngf, nc)
    d = Discriminator(size, ndf, nc)
    for m in list(g.modules()) + list(d.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight_orig if hasattr(m, "weight_orig") else m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return g, d, opt_g, opt_d


def main() -> None:
    ap = common_arguments(__doc__.splitlines()[0])
    ap.add_argument("--ngf", type=positive(int), default=16, help="canard's fastgan default")
    ap.add_argument("--ndf", type=positive(int), default=32, help="canard's fastgan default on colour pictures (16 on grey)")
    ap.add_argument("--batch", type=positive(int), default=16, help="canard's fastgan default")
    ap.add_argument("--ema-half-life", type=positive(float, zero=True), default=10000, help="images (canard's default), ramped; 0: no average")
    args = ap.parse_args()
    size = args.image_size
    if size not in (32, 64, 128, 256):
        raise SystemExit(f"reference_fastgan: --image-size must be 32, 64, 128 or 256, not {size}")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = load(args.data, size, args.channels)
    nz, batch = 100, args.batch
    g, d, opt_g, opt_d = networks(size, nz, args.ngf, args.ndf, args.channels)
    g_ema = copy.deepcopy(g).eval()
    steps, start = 0, time.monotonic()
    while time.monotonic() - start < args.minutes * 60:
        step(g, d, opt_g, opt_d, data[torch.randint(0, len(data), (batch,))], nz)
        # canard's average: a half-life in images, at most 5% of the images seen (StyleGAN2-ADA's ramp).
        decay = 0.5 ** (batch / max(min(args.ema_half_life, 0.05 * (steps + 1) * batch), 1e-8))
        with torch.no_grad():
            for pe, p in zip(g_ema.parameters(), g.parameters()):
                pe.lerp_(p, 1 - decay)
            for be, b_ in zip(g_ema.buffers(), g.buffers()):
                be.copy_(b_)
        steps += 1
    write_samples(g_ema, nz, args, steps, batch, time.monotonic() - start, len(data))

if __name__ == "__main__":
    main()
