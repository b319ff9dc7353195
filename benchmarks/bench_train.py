"""Training throughput: our numba/BLAS engine vs PyTorch-CPU on the same network, one command.

    python benchmarks/bench_train.py [--dataset fashion_mnist|cifar10] [--batches 30] [--torch-threads 2]

Reports train samples/s (steady state, median over repeats) for
  * supervised backprop on ``conv3`` (cross-entropy, flatten head, Adam) -- ours vs torch;
  * CLAPP (layer-wise, explicit local updates, two views) vs our end-to-end InfoNCE on the same
    encoder, and vs a PyTorch implementation of the same layer-wise CLAPP update;
with the first step (numba compilation) timed separately.  Data: random normal images of the
dataset's shape (throughput does not depend on pixel values), labels uniform -- synthetic, for
timing only.  Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np


def timeit(step, batches, repeats=3):
    """(first-step seconds, steady seconds per step, peak MB of numpy allocations while training).

    Peak memory is traced over the first step and one further step (tracemalloc: numpy buffers,
    including the layers' reusable buffers; torch's allocator is not traced, so it is
    reported for our engine only)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    step(0)
    first = time.perf_counter() - t0
    step(1)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for b in range(batches):
            step(b + 2)
        rates.append(time.perf_counter() - t0)
    return first, statistics.median(rates) / batches, peak


def ours_supervised(shape, bs):
    from bioplausible import encoders
    from bioplausible.rules.backprop import Supervised

    enc = encoders.build("conv3", shape, seed=0)
    rule = Supervised(enc, 10, lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((bs, *shape)).astype(np.float32)
    y = rng.integers(0, 10, bs)
    return lambda b: rule.step(enc, {"x": x, "y": y, "rng": np.random.default_rng(b)})


def ours_ssl(shape, bs, arm):
    from bioplausible import encoders, views
    from bioplausible.rules.clapp import CLAPP
    from bioplausible.rules.ssl import EndToEnd

    enc = encoders.build("conv3", shape, seed=0)
    vcfg = views.preset("cifar10" if shape[-1] == 3 else "fashion_mnist")
    rule = CLAPP(enc, vcfg, variant="clapp") if arm == "clapp" else EndToEnd(enc, vcfg, loss="infonce")
    x = np.random.default_rng(0).standard_normal((bs, *shape)).astype(np.float32)
    return lambda b: rule.step(enc, {"x": x, "y": None, "rng": np.random.default_rng(b)})


def torch_net(torch, c_in, flat):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(c_in, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(flat, 10))


def torch_supervised(torch, shape, bs):
    h, w, c = shape
    net = torch_net(torch, c, 128 * (h // 4) * (w // 4))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(bs, c, h, w)
    y = torch.randint(0, 10, (bs,))

    def step(b):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    return step


def torch_clapp(torch, shape, bs):
    """Layer-wise CLAPP in PyTorch: per block, hinge on GAP codes of two views, detach between
    blocks, autograd inside the block (the update equals CLAPP's explicit rule for shared W)."""
    h, w, c = shape
    nn = torch.nn
    blocks = [nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
              nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
              nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.ReLU())]
    preds = [nn.Linear(d, d, bias=False) for d in (32, 64, 128)]
    opts = [torch.optim.Adam(list(b.parameters()) + list(p.parameters()), 3e-4)
            for b, p in zip(blocks, preds)]
    x = torch.randn(2 * bs, c, h, w)   # two views already made (augmentation not timed here)

    def step(b):
        g = torch.Generator().manual_seed(b)
        hcur = x
        for blk, pred, opt in zip(blocks, preds, opts):
            out = blk(hcur.detach())
            z = out.mean(dim=(2, 3))
            ctx, tgt = z[:bs], z[bs:]
            yv = torch.where(torch.rand(bs, generator=g) < 0.5, 1.0, -1.0)
            other = torch.roll(torch.arange(bs), 1)
            tsel = torch.where(yv[:, None] > 0, tgt, tgt[other])
            u = (tsel * pred(ctx)).sum(1)
            loss = torch.clamp(1 - yv * u, min=0).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hcur = out
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "cifar10"])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--torch-threads", type=int, default=2)
    args = ap.parse_args(argv)
    shape = (28, 28, 1) if args.dataset == "fashion_mnist" else (32, 32, 3)
    bs = args.batch_size
    rows = []

    def add(name, step, views=1):
        first, per, peak = timeit(step, args.batches)
        rows.append((name, first, bs / per))
        mem = f"   peak {peak:6.0f} MB" if name.startswith("ours") else ""
        print(f"  {name:<34} first step {first:6.2f} s   steady {bs / per:8.0f} samples/s{mem}"
              + ("  (2 views each)" if views == 2 else ""), flush=True)

    print(f"conv3 on {args.dataset} {shape}, batch {bs}")
    add("ours supervised backprop", ours_supervised(shape, bs))
    try:
        import torch

        torch.set_num_threads(args.torch_threads)
        add(f"torch supervised backprop ({args.torch_threads} thr)", torch_supervised(torch, shape, bs))
    except ImportError:
        torch = None
        print("  torch not installed: pip install -e '.[torch]' for the reference rows")
    add("ours CLAPP (layer-wise, local)", ours_ssl(shape, bs, "clapp"), 2)
    add("ours InfoNCE (end-to-end backprop)", ours_ssl(shape, bs, "infonce"), 2)
    if torch is not None:
        add(f"torch CLAPP (layer-wise) ({args.torch_threads} thr)", torch_clapp(torch, shape, bs), 2)
    rate = {n: r for n, _, r in rows}
    print("\nratios (samples/s):")
    if torch is not None:
        print(f"  ours / torch, supervised       {rate['ours supervised backprop'] / rate[f'torch supervised backprop ({args.torch_threads} thr)']:.2f}")
        print(f"  ours CLAPP / torch CLAPP       {rate['ours CLAPP (layer-wise, local)'] / rate[f'torch CLAPP (layer-wise) ({args.torch_threads} thr)']:.2f}")
    print(f"  ours CLAPP / ours InfoNCE      {rate['ours CLAPP (layer-wise, local)'] / rate['ours InfoNCE (end-to-end backprop)']:.2f}")


if __name__ == "__main__":
    main()
