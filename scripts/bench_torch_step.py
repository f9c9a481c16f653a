"""One training step in PyTorch, the same networks and step as canard-train's, for
scripts/bench-train.sh: prints one JSON line {"images_per_s", "peak_rss_mib", ...}.

--arch dcgan (default) is pytorch/examples' dcgan: one generator forward, D on real and on
the detached fake (one D update), D on the fake again (one G update); bias-free convs,
BatchNorm, ReLU / LeakyReLU(0.2), Adam(2e-4, β1 0.5), BCE on logits.

--arch wgan-gp is Gulrajani et al. 2017 as canard-train runs it: a critic with LayerNorm
over each sample's (C, H, W) and a per-channel scale and shift (no BatchNorm), 5 critic
updates each on a new batch with the gradient penalty (λ 10, double backward), then one
generator update; Adam(1e-4, β (0, 0.9)).

--arch fastgan is canard's small-data GAN, scripts/reference_fastgan.py's networks and step
(DiffAugment always on).

--augment adds DiffAugment (Zhao et al. 2020; colour, translation, cutout), written here
from the paper's definition: every image the critic sees, real or fake, goes through it.
"""
import argparse
import json
import resource
import time

import torch
from torch import nn

from arguments import positive


def generator(size, nz, ngf, nc):
    stages = size.bit_length() - 3  # log2(size) - 2
    layers, c_in = [], nz
    for i in range(stages + 1):
        last = i == stages
        c_out = nc if last else ngf << (stages - 1 - i)
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False))
        layers += [nn.Tanh()] if last else [nn.BatchNorm2d(c_out), nn.ReLU(True)]
        c_in = c_out
    return nn.Sequential(*layers)


def discriminator(size, ndf, nc, norm=nn.BatchNorm2d):
    """The DCGAN discriminator; with norm=LayerNorm2d, the WGAN-GP critic."""
    stages = size.bit_length() - 3
    layers, c_in = [], nc
    for i in range(stages + 1):
        last = i == stages
        c_out = 1 if last else ndf << i
        stride, pad = (1, 0) if last else (2, 1)
        layers.append(nn.Conv2d(c_in, c_out, 4, stride, pad, bias=False))
        if not last:
            if i > 0:
                layers.append(norm(c_out))
            # In place only where no second-order gradient goes through it.
            layers.append(nn.LeakyReLU(0.2, inplace=norm is nn.BatchNorm2d))
        c_in = c_out
    return nn.Sequential(*layers)


class LayerNorm2d(nn.Module):
    """LayerNorm over (C, H, W) per sample, with a per-channel scale and shift."""

    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(c))
        self.beta = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        x = nn.functional.layer_norm(x, x.shape[1:], eps=1e-5)
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def diff_augment(x, cutout=True):
    """DiffAugment's colour, translation and (unless told not to) cutout, per sample,
    differentiable in x."""
    b, c, h, w = x.shape
    # Colour: brightness ±0.5, saturation ×[0, 2] about the channel mean, contrast ×[0.5, 1.5] about the image mean.
    x = x + (torch.rand(b, 1, 1, 1) - 0.5)
    m = x.mean(dim=1, keepdim=True)
    x = (x - m) * (torch.rand(b, 1, 1, 1) * 2) + m
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - m) * (torch.rand(b, 1, 1, 1) + 0.5) + m
    # Translation by up to 1/8 of the size, zeros coming in.
    sy, sx = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
    src_y = torch.arange(h).view(1, h, 1) - torch.randint(-sy, sy + 1, (b, 1, 1))
    src_x = torch.arange(w).view(1, 1, w) - torch.randint(-sx, sx + 1, (b, 1, 1))
    inside = (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)
    index = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).view(b, 1, h * w).expand(b, c, h * w)
    x = torch.gather(x.reshape(b, c, h * w), 2, index).view(b, c, h, w) * inside.unsqueeze(1)
    if not cutout:
        return x
    # Cutout: a zeroed square of half the size at a random centre, clipped at the border.
    ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    top = torch.randint(0, h + 1 - ch % 2, (b, 1, 1)) - ch // 2
    left = torch.randint(0, w + 1 - cw % 2, (b, 1, 1)) - cw // 2
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    cut = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~cut).unsqueeze(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--image-size", type=positive(int), default=64)
    p.add_argument("--batch", type=positive(int), default=64)
    p.add_argument("--width", type=positive(int), default=64, help="ngf = ndf")
    p.add_argument("--ngf", type=positive(int), help="fastgan: the generator's base width, if not --width")
    p.add_argument("--ndf", type=positive(int), help="fastgan: the critic's base width, if not --width")
    p.add_argument("--nz", type=positive(int), default=100)
    p.add_argument("--channels", type=positive(int), default=3)
    p.add_argument("--warmup", type=positive(int, zero=True), default=2)
    p.add_argument("--steps", type=positive(int), default=10)
    p.add_argument("--threads", type=positive(int), default=2)
    p.add_argument("--arch", choices=["dcgan", "wgan-gp", "fastgan"], default="dcgan")
    p.add_argument("--augment", action="store_true", help="DiffAugment on every image the critic sees")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    a = p.parse_args()
    if a.arch != "fastgan" and (a.ngf is not None or a.ndf is not None):
        p.error("--ngf and --ndf apply to --arch fastgan; the other archs take --width")
    ngf = a.width if a.ngf is None else a.ngf
    ndf = a.width if a.ndf is None else a.ndf
    if a.device != "cpu":
        torch.set_default_device(a.device)  # not on the CPU: it adds a hook to every call
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    view = diff_augment if a.augment else (lambda x: x)
    g = generator(a.image_size, a.nz, a.width, a.channels)
    real = torch.rand(a.batch, a.channels, a.image_size, a.image_size) * 2 - 1
    if a.arch == "fastgan":
        import reference_fastgan  # here: it imports this file's diff_augment

        g, d, opt_g, opt_d = reference_fastgan.networks(a.image_size, a.nz, ngf, ndf, a.channels)
    elif a.arch == "dcgan":
        d = discriminator(a.image_size, a.width, a.channels)
        opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    else:
        d = discriminator(a.image_size, a.width, a.channels, norm=LayerNorm2d)
        opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.0, 0.9))
        opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.0, 0.9))
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(a.batch), torch.zeros(a.batch)

    def dcgan_step():
        fake = g(torch.randn(a.batch, a.nz, 1, 1))
        d.zero_grad()
        loss_d = bce(d(view(real)).view(-1), ones) + bce(d(view(fake.detach())).view(-1), zeros)
        loss_d.backward()
        opt_d.step()
        g.zero_grad()
        loss_g = bce(d(view(fake)).view(-1), ones)
        loss_g.backward()
        opt_g.step()
        return loss_d.item(), loss_g.item()

    def wgan_gp_step():
        for _ in range(5):
            r = view(real)
            with torch.no_grad():
                f = g(torch.randn(a.batch, a.nz, 1, 1))
            f = view(f)
            d.zero_grad()
            eps = torch.rand(a.batch, 1, 1, 1)
            x_hat = (eps * r + (1 - eps) * f).requires_grad_(True)
            grad, = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
            gp = ((grad.flatten(1).pow(2).sum(1) + 1e-12).sqrt() - 1).pow(2).mean()
            loss_d = d(f).mean() - d(r).mean() + 10 * gp
            loss_d.backward()
            opt_d.step()
        g.zero_grad()
        for q in d.parameters():
            q.requires_grad_(False)
        loss_g = -d(view(g(torch.randn(a.batch, a.nz, 1, 1)))).mean()
        loss_g.backward()
        for q in d.parameters():
            q.requires_grad_(True)
        opt_g.step()
        return loss_d.item(), loss_g.item()

    def fastgan_step():
        return reference_fastgan.step(g, d, opt_g, opt_d, real, a.nz)

    step = {"dcgan": dcgan_step, "wgan-gp": wgan_gp_step, "fastgan": fastgan_step}[a.arch]

    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    for _ in range(a.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    secs = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "images_per_s": a.batch * a.steps / secs,
        "step_s": secs / a.steps,
        "peak_rss_mib": rss,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "arch": a.arch,
        "device": a.device,
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if a.device.startswith("cuda") else None,
        "augment": a.augment,
    }))


if __name__ == "__main__":
    main()
