"""Benchmark: the `conv3` encoder forward + backward, ours (numba + BLAS) against PyTorch CPU.

    python benchmarks/bench_layers.py [--batch 256] [--reps 10] [--threads 2] [--no-torch]

Reports, for 28x28x1 and 32x32x3 inputs at batch 256:

* first-call time (numba compilation + one step) separately from the steady state;
* steady-state time of each layer's forward and backward (median over reps);
* achieved GFLOP/s of each convolution and its fraction of this machine's sgemm rate, measured in
  the same process on a 2048^3 float32 matrix product (numpy's BLAS, all its threads);
* the same network in PyTorch (torch.nn.Conv2d/ReLU/MaxPool2d, ``torch.set_num_threads``), and the
  ratio ours / torch in samples per second (> 1 means we are faster).

Two variants of ours are timed: the separate layers (Conv2d, ReLU, MaxPool2d) and the fused
``ReLUMaxPool2d`` after conv1 and conv2.  The backward pass is what a backprop step needs: no input
gradient for the first convolution.  Timings are ratios measured in one process; absolute numbers
depend on the machine (and on anything else running on it).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def sgemm_rate(n=2048, reps=7):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    a @ b
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * n ** 3 / np.median(ts) / 1e9


def build(c_in, fused, seed=0):
    from bioplausible.layers import Conv2d, MaxPool2d, ReLU, ReLUMaxPool2d
    rng = np.random.default_rng(seed)
    layers = [Conv2d(c_in, 32, 3, padding=1, rng=rng)]
    layers += [ReLUMaxPool2d(2)] if fused else [ReLU(), MaxPool2d(2)]
    layers += [Conv2d(32, 64, 3, padding=1, rng=rng)]
    layers += [ReLUMaxPool2d(2)] if fused else [ReLU(), MaxPool2d(2)]
    layers += [Conv2d(64, 128, 3, padding=1, rng=rng), ReLU()]
    return layers


def step(layers, x, timings=None):
    """One forward + backward; dy = ones-like pattern; records per-layer times into ``timings``."""
    caches = []
    h = x
    for i, layer in enumerate(layers):
        t = time.perf_counter()
        h, c = layer.forward(h)
        if timings is not None:
            timings[i][0].append(time.perf_counter() - t)
        caches.append(c)
    g = np.full(h.shape, 1e-3, h.dtype)
    for i in range(len(layers) - 1, -1, -1):
        t = time.perf_counter()
        g, _ = layers[i].backward(caches[i], g, need_dx=i > 0)
        if timings is not None:
            timings[i][1].append(time.perf_counter() - t)
    caches.clear()
    return h


def conv_flops(layers, x_shape):
    """FLOPs (forward, backward) of each Conv2d given the input shape."""
    from bioplausible.layers import Conv2d
    out = {}
    shape = x_shape[1:]
    n = x_shape[0]
    for i, layer in enumerate(layers):
        new = layer.output_shape(shape)
        if isinstance(layer, Conv2d):
            m = n * new[0] * new[1]
            k = layer.kernel[0] * layer.kernel[1] * layer.c_in
            f = 2 * m * k * layer.c_out
            out[i] = (f, f * (2 if i > 0 else 1))
        shape = new
    return out


def torch_net(torch, c_in):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(c_in, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU())


def time_ours(layers, x, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        step(layers, x)
        ts.append(time.perf_counter() - t)
    return ts


def time_torch(torch, net, xt, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        for p in net.parameters():
            p.grad = None
        y = net(xt)
        y.backward(torch.full_like(y, 1e-3))
        ts.append(time.perf_counter() - t)
    return ts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="alternate ours/torch this many times")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)

    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            print("torch not installed: skipping the comparison")

    import numba
    print(f"numpy {np.__version__}, numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} "
          f"threads), torch {torch.__version__ if torch else '-'} ({args.threads} threads), "
          f"{os.cpu_count()} cpus")
    from bioplausible.layers import _parallel, conv as lconv
    print(f"layers: batch split over {_parallel.n_workers()} threads (= numpy's BLAS threads) for "
          f"arrays >= {_parallel.MIN_SPLIT} elements; convs with kh*kw*c_in <= "
          f"{lconv.RECOMPUTE_MAX_K} rebuild im2col in L2-sized blocks")
    peak = sgemm_rate()
    print(f"sgemm 2048^3 float32: {peak:.0f} GFLOP/s (the 100% reference below)\n")

    summary = []
    first_done = False
    for shape in [(28, 28, 1), (32, 32, 3)]:
        rng = np.random.default_rng(1)
        x = rng.standard_normal((args.batch,) + shape).astype(np.float32)
        variants = {"separate": build(shape[2], fused=False), "fused": build(shape[2], fused=True)}
        print(f"=== conv3 on {shape[0]}x{shape[1]}x{shape[2]}, batch {args.batch} ===")
        for name, layers in variants.items():
            t = time.perf_counter()
            step(layers, x)
            first = time.perf_counter() - t
            tag = ("first call (compile, or load from numba cache, + 1 step)" if not first_done
                   else "first call (1 step, kernels compiled)")
            print(f"{name:9s} {tag}: {first:.2f} s")
            first_done = True

        # per-layer steady state (separate and fused)
        for name, layers in variants.items():
            timings = [([], []) for _ in layers]
            for _ in range(args.reps):
                step(layers, x, timings)
            flops = conv_flops(layers, x.shape)
            print(f"\n[{name}] per layer, median ms   fwd      bwd    conv GFLOP/s fwd / bwd (% of sgemm)")
            tot_f = tot_b = 0.0
            for i, layer in enumerate(layers):
                tf, tb = np.median(timings[i][0]), np.median(timings[i][1])
                tot_f += tf
                tot_b += tb
                extra = ""
                if i in flops:
                    gf, gb = flops[i][0] / tf / 1e9, flops[i][1] / tb / 1e9
                    extra = f"   {gf:6.0f} ({100 * gf / peak:3.0f}%) / {gb:6.0f} ({100 * gb / peak:3.0f}%)"
                print(f"  {i} {repr(layer)[:34]:34s} {1e3 * tf:7.2f}  {1e3 * tb:7.2f}{extra}")
            print(f"  {'sum':36s} {1e3 * tot_f:7.2f}  {1e3 * tot_b:7.2f}")

        # whole step, alternating with torch
        ours = {k: [] for k in variants}
        theirs = []
        if torch is not None:
            net = torch_net(torch, shape[2])
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            time_torch(torch, net, xt, 2)  # warm-up
        for _ in range(args.rounds):
            for k, layers in variants.items():
                ours[k] += time_ours(layers, x, args.reps)
            if torch is not None:
                theirs += time_torch(torch, net, xt, args.reps)
        print(f"\nwhole step (forward + backward), median over {args.rounds}x{args.reps}:")
        for k, ts in ours.items():
            med = np.median(ts)
            line = f"  ours {k:9s} {1e3 * med:7.1f} ms  {args.batch / med:7.0f} samples/s"
            if theirs:
                ratio = np.median(theirs) / med
                line += f"   ours/torch = {ratio:.2f}"
                summary.append((shape, k, args.batch / med, args.batch / np.median(theirs), ratio))
            print(line)
        if theirs:
            med = np.median(theirs)
            print(f"  torch          {1e3 * med:7.1f} ms  {args.batch / med:7.0f} samples/s")
        print()

    if summary:
        print("summary (samples/s):  input      variant    ours    torch  ours/torch")
        for shape, k, a, b, r in summary:
            print(f"                      {shape[0]}x{shape[1]}x{shape[2]}  {k:9s} {a:6.0f}  {b:7.0f}  {r:9.2f}")


if __name__ == "__main__":
    main()
