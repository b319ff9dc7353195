"""Training throughput: our numba/BLAS engine vs PyTorch-CPU on the same network, one command.

    python benchmarks/bench_train.py [--dataset fashion_mnist|cifar10] [--batches 10] [--rounds 5]
                                     [--data synthetic|real] [--warmup 0] [--torch-threads 2] [--grid]

Reports train samples/s (steady state) for
  * supervised backprop on ``conv3`` (cross-entropy, flatten head, Adam) -- ours vs torch;
  * CLAPP (layer-wise, explicit local updates, views; lr 3e-4) vs our end-to-end InfoNCE on the
    same encoder, and vs a PyTorch implementation of the same layer-wise CLAPP update;
  * with ``--grid``, CLAPP with patch-grid positives (the main job's default: 3x3 grid of 16x16
    patches on CIFAR-10, lr 1e-3);
with the first step (numba compilation, or loading numba's on-disk cache) timed separately.

Timing is **interleaved**: every round runs ``--batches`` steps of each arm in turn, and an arm's
rate is the median over rounds, so that a load change on a shared machine hits all arms alike
and the ratios stay fair.

Data: ``synthetic`` (default) = random normal images of the dataset's shape, labels uniform, for
timing only; ``real`` = batches of the real training set (``data_prep.prepare``).  CLAPP's cost
depends on the data: synapses change only for inputs whose hinge is active (a silent modulator
means no plasticity, and the rule skips those inputs), and on real images the hinges of a trained
encoder are satisfied for many inputs.  ``--warmup N`` trains every arm N steps on real data
before timing, so the timed steps are those of a rule in training, not at its random start; the
fraction of inputs that were plastic in the timed CLAPP steps is printed.  Not a test: numbers
depend on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np


class Batches:
    """Real training batches (normalised), cycled deterministically by step index."""

    def __init__(self, dataset, bs, n=10240):
        from bioplausible.data_prep import prepare

        d = prepare(dataset, n_train=n, n_test=10, seed=0)
        self.x, self.y, self.bs = d.x_train, d.y_train, bs
        self.norm = (d.mean, d.std)
        self.n_batches = len(self.x) // bs

    def batch(self, b):
        i = (b % self.n_batches) * self.bs
        return self.x[i:i + self.bs], self.y[i:i + self.bs]


def first_step(step):
    """(seconds of the first step, peak MB of numpy allocations over it and one more step).

    tracemalloc sees numpy buffers, including the layers' reusable buffers; torch's allocator is
    not traced, so peak memory is reported for our engine only."""
    tracemalloc.start()
    t0 = time.perf_counter()
    step(0)
    first = time.perf_counter() - t0
    step(1)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return first, peak


def interleaved(steps: dict, batches: int, rounds: int, start: int = 2, settle: float = 0.5) -> dict:
    """Seconds per step of each arm: median over ``rounds`` rounds, each running ``batches``
    steps of every arm in turn, with a pause of ``settle`` seconds (not timed) before each arm:
    torch's OpenMP threads and OpenBLAS's threads keep spinning for a while after their last
    parallel region and would otherwise slow down whichever arm runs next."""
    times = {name: [] for name in steps}
    b0 = start
    for _ in range(rounds):
        for name, step in steps.items():
            time.sleep(settle)     # let the previous arm's idle threads (OpenMP, BLAS) stop spinning
            t0 = time.perf_counter()
            for b in range(batches):
                step(b0 + b)
            times[name].append((time.perf_counter() - t0) / batches)
        b0 += batches
    return {name: statistics.median(t) for name, t in times.items()}


def ours_supervised(shape, bs, data=None):
    from bioplausible import encoders
    from bioplausible.rules.backprop import Supervised

    enc = encoders.build("conv3", shape, seed=0)
    rule = Supervised(enc, 10, lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((bs, *shape)).astype(np.float32)
    y = rng.integers(0, 10, bs)

    def step(b):
        xb, yb = data.batch(b) if data is not None else (x, y)
        return rule.step(enc, {"x": xb, "y": yb, "rng": np.random.default_rng(b)})
    return step


def ours_ssl(shape, bs, arm, data=None, log=None, positives="views", lr=3e-4):
    from bioplausible import encoders, views
    from bioplausible.rules.clapp import CLAPP
    from bioplausible.rules.ssl import EndToEnd

    enc = encoders.build("conv3", shape, seed=0)
    vcfg = views.preset("cifar10" if shape[-1] == 3 else "fashion_mnist")
    norm = data.norm if data is not None else None
    rule = (CLAPP(enc, vcfg, variant="clapp", positives=positives, norm=norm, lr=lr) if arm == "clapp"
            else EndToEnd(enc, vcfg, loss="infonce", norm=norm))
    x = np.random.default_rng(0).standard_normal((bs, *shape)).astype(np.float32)

    def step(b):
        xb = data.batch(b)[0] if data is not None else x
        m = rule.step(enc, {"x": xb, "y": None, "rng": np.random.default_rng(b)})
        if log is not None:
            log.append(m)
    return step


def torch_net(torch, c_in, flat):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(c_in, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(flat, 10))


def torch_supervised(torch, shape, bs, data=None):
    h, w, c = shape
    net = torch_net(torch, c, 128 * (h // 4) * (w // 4))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(bs, c, h, w)
    y = torch.randint(0, 10, (bs,))

    def step(b):
        if data is not None:
            xb, yb = data.batch(b)
            x.copy_(torch.from_numpy(xb.transpose(0, 3, 1, 2)))
            y.copy_(torch.from_numpy(yb.astype(np.int64)))
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    return step


def torch_clapp(torch, shape, bs, data=None):
    """Layer-wise CLAPP in PyTorch: per block, hinge on GAP codes, detach between blocks, autograd
    inside the block (the update equals CLAPP's explicit rule for shared W).  The same either/or
    sampling as ours: every image's first view is a context; half the images (drawn per step) get
    a positive update and need a second view, the others a negative one whose target is another
    image's first view -- 1.5 views per image on average."""
    h, w, c = shape
    nn = torch.nn
    blocks = [nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
              nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
              nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.ReLU())]
    preds = [nn.Linear(d, d, bias=False) for d in (32, 64, 128)]
    opts = [torch.optim.Adam(list(b.parameters()) + list(p.parameters()), 3e-4)
            for b, p in zip(blocks, preds)]
    x = torch.randn(2 * bs, c, h, w)   # views already made (augmentation not timed here)

    def step(b):
        g = torch.Generator().manual_seed(b)
        if data is not None:   # real images, no augmentation (both views = the image)
            xb = torch.from_numpy(data.batch(b)[0].transpose(0, 3, 1, 2))
            x[:bs].copy_(xb)
            x[bs:].copy_(xb)
        yv = torch.where(torch.rand(bs, generator=g) < 0.5, 1.0, -1.0)
        pos = torch.nonzero(yv > 0).flatten()
        tgt = torch.randperm(bs, generator=g)            # negatives: another image's context
        tgt[pos] = bs + torch.arange(len(pos))          # positives: the image's second view
        hcur = torch.cat([x[:bs], x[bs:][pos]])
        for blk, pred, opt in zip(blocks, preds, opts):
            out = blk(hcur.detach())
            z = out.mean(dim=(2, 3))
            u = (z[tgt] * pred(z[:bs])).sum(1)
            loss = torch.clamp(1 - yv * u, min=0).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hcur = out
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "cifar10"])
    ap.add_argument("--batches", type=int, default=10, help="steps per arm per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--data", default="synthetic", choices=["synthetic", "real"])
    ap.add_argument("--warmup", type=int, default=0,
                    help="train every arm this many steps (on the chosen data) before timing")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--grid", action="store_true",
                    help="also time CLAPP with patch-grid positives (the main job's default, lr 1e-3)")
    args = ap.parse_args(argv)
    shape = (28, 28, 1) if args.dataset == "fashion_mnist" else (32, 32, 3)
    bs = args.batch_size
    data = Batches(args.dataset, bs) if args.data == "real" else None
    clapp_log = []
    arms = {"ours supervised backprop": ours_supervised(shape, bs, data)}
    try:
        import torch

        torch.set_num_threads(args.torch_threads)
        arms["torch supervised backprop"] = torch_supervised(torch, shape, bs, data)
    except ImportError:
        torch = None
        print("  torch not installed: pip install -e '.[torch]' for the reference rows")
    arms["ours CLAPP (layer-wise, local)"] = ours_ssl(shape, bs, "clapp", data, clapp_log)
    grid_log = []
    if args.grid:
        arms["ours CLAPP, grid positives"] = ours_ssl(shape, bs, "clapp", data, grid_log,
                                                      positives="grid", lr=1e-3)
    arms["ours InfoNCE (end-to-end backprop)"] = ours_ssl(shape, bs, "infonce", data)
    if torch is not None:
        arms["torch CLAPP (layer-wise)"] = torch_clapp(torch, shape, bs, data)

    print(f"conv3 on {args.dataset} {shape}, batch {bs}, {args.data} data"
          + (f", torch {args.torch_threads} threads" if torch is not None else ""))
    first = {}
    for name, step in arms.items():
        first[name] = first_step(step)
    if args.warmup:
        t0 = time.perf_counter()
        for name, step in arms.items():
            for b in range(args.warmup):
                step(2 + b)
        print(f"  warm-up: {args.warmup} steps per arm ({time.perf_counter() - t0:.0f} s)")
    clapp_log.clear()
    grid_log.clear()
    per = interleaved(arms, args.batches, args.rounds, start=2 + args.warmup)
    rate = {name: bs / t for name, t in per.items()}
    for name in arms:
        f, peak = first[name]
        mem = f"   peak {peak:6.0f} MB" if name.startswith("ours") else ""
        print(f"  {name:<36} first step {f:6.2f} s   steady {rate[name]:8.0f} samples/s{mem}")
    for name, log in (("CLAPP", clapp_log), ("CLAPP grid", grid_log)):
        if log:
            fr = [np.mean([m[k] for m in log]) for k in sorted(log[0]) if k.startswith("plastic_b")]
            print(f"  {name}: inputs with an active hinge (plastic) in the timed steps, blocks 1-3: "
                  + " / ".join(f"{f:.2f}" for f in fr))

    print("\nratios (samples/s):")
    if torch is not None:
        print(f"  ours / torch, supervised       {rate['ours supervised backprop'] / rate['torch supervised backprop']:.2f}")
        print(f"  ours CLAPP / torch CLAPP       {rate['ours CLAPP (layer-wise, local)'] / rate['torch CLAPP (layer-wise)']:.2f}")
    print(f"  ours CLAPP / ours InfoNCE      {rate['ours CLAPP (layer-wise, local)'] / rate['ours InfoNCE (end-to-end backprop)']:.2f}")
    if args.grid:
        print(f"  ours CLAPP grid / ours InfoNCE {rate['ours CLAPP, grid positives'] / rate['ours InfoNCE (end-to-end backprop)']:.2f}")


if __name__ == "__main__":
    main()
