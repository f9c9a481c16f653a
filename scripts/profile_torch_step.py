"""PyTorch's DCGAN step phase by phase (the network and step of bench_torch_step.py), for
comparison with `cargo run --release -p canard-train --example profile_step -- SIZE`:

    python3 scripts/profile_torch_step.py 64     # image size; ngf = ndf = 64, batch 64, 2 threads

Prints ms per step for each phase, averaged over 6 steps after 2 warm-up steps.
"""
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch_step import discriminator, generator  # noqa: E402


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    batch, warmup, steps = 64, 2, 6
    torch.set_num_threads(2)
    torch.manual_seed(0)
    g, d = generator(size, 100, 64, 3), discriminator(size, 64, 3)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    real = torch.rand(batch, 3, size, size) * 2 - 1
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    names = ["G forward", "D forward, real", "D forward, fake", "D backward", "D Adam",
             "D forward, fake for G", "G backward (through D)", "G Adam"]
    totals = [0.0] * len(names)
    for it in range(warmup + steps):
        marks = [time.perf_counter()]
        fake = g(torch.randn(batch, 100, 1, 1))
        marks.append(time.perf_counter())
        d.zero_grad()
        d_real = d(real).view(-1)
        marks.append(time.perf_counter())
        d_fake = d(fake.detach()).view(-1)
        marks.append(time.perf_counter())
        (bce(d_real, ones) + bce(d_fake, zeros)).backward()
        marks.append(time.perf_counter())
        opt_d.step()
        marks.append(time.perf_counter())
        g.zero_grad()
        loss_g = bce(d(fake).view(-1), ones)
        marks.append(time.perf_counter())
        loss_g.backward()
        marks.append(time.perf_counter())
        opt_g.step()
        marks.append(time.perf_counter())
        if it >= warmup:
            for i in range(len(names)):
                totals[i] += marks[i + 1] - marks[i]
    total = sum(totals)
    for name, t in zip(names, totals):
        print(f"| {name} | {t / steps * 1e3:.1f} | {100 * t / total:.1f}% |")
    print(f"| **total** | **{total / steps * 1e3:.1f}** ({batch * steps / total:.1f} img/s) | |")


if __name__ == "__main__":
    main()
