"""One DCGAN training step in PyTorch, the same network and step as canard-train's,
for scripts/bench-train.sh: prints one JSON line {"images_per_s", "peak_rss_mib", ...}.

The step is pytorch/examples' dcgan: one generator forward, D on real and on the detached
fake (one D update), D on the fake again (one G update); bias-free convs, BatchNorm,
ReLU / LeakyReLU(0.2), Adam(2e-4, β1 0.5), BCE on logits.
"""
import argparse
import json
import resource
import time

import torch
from torch import nn


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


def discriminator(size, ndf, nc):
    stages = size.bit_length() - 3
    layers, c_in = [], nc
    for i in range(stages + 1):
        last = i == stages
        c_out = 1 if last else ndf << i
        stride, pad = (1, 0) if last else (2, 1)
        layers.append(nn.Conv2d(c_in, c_out, 4, stride, pad, bias=False))
        if not last:
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        c_in = c_out
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=64, help="ngf = ndf")
    p.add_argument("--nz", type=int, default=100)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    g = generator(a.image_size, a.nz, a.width, a.channels)
    d = discriminator(a.image_size, a.width, a.channels)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    real = torch.rand(a.batch, a.channels, a.image_size, a.image_size) * 2 - 1
    ones, zeros = torch.ones(a.batch), torch.zeros(a.batch)

    def step():
        fake = g(torch.randn(a.batch, a.nz, 1, 1))
        d.zero_grad()
        loss_d = bce(d(real).view(-1), ones) + bce(d(fake.detach()).view(-1), zeros)
        loss_d.backward()
        opt_d.step()
        g.zero_grad()
        loss_g = bce(d(fake).view(-1), ones)
        loss_g.backward()
        opt_g.step()
        return loss_d.item(), loss_g.item()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "images_per_s": a.batch * a.steps / secs,
        "step_s": secs / a.steps,
        "peak_rss_mib": rss,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
