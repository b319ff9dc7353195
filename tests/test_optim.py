"""Optimisers: torch.optim semantics (reference when torch is installed), a naive float64 formula
otherwise, in-place updates, missing gradients and state_dict round trips.  All data synthetic."""
import math

import numpy as np
import pytest

from bioplausible.optim import SGD, Adam, AdamW

SHAPES = [{"w": (3, 3, 2, 4), "b": (4,)}, {"w": (7, 5), "b": (5,)}]
N_STEPS = 6

CONFIGS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
    ("sgd", dict(lr=0.05, momentum=0.8, weight_decay=1e-2, nesterov=True)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1)),
]


def make_params(rng):
    return [{k: rng.standard_normal(s).astype(np.float32) for k, s in layer.items()}
            for layer in SHAPES]


def make_grads(rng, n_steps=N_STEPS):
    """Synthetic gradients; some are missing (None or absent) to test 'no gradient this step'."""
    out = []
    for t in range(n_steps):
        grads = [{k: rng.standard_normal(s).astype(np.float32) for k, s in layer.items()}
                 for layer in SHAPES]
        if t == 2:
            grads[1]["b"] = None
        if t == 3:
            del grads[0]["w"]
        if t == 4:
            grads[1] = None
        out.append(grads)
    return out


def build(kind, params, cfg):
    if kind == "sgd":
        return SGD(params, **cfg)
    if kind == "adam":
        return Adam(params, **cfg)
    return AdamW(params, **cfg)


def lr_at(cfg, t):
    """A schedule: the learning rate is halved from step 4 on (lr is a settable attribute)."""
    return cfg["lr"] * (0.5 if t >= 4 else 1.0)


def run_ours(kind, cfg, params, grads_seq):
    opt = build(kind, params, cfg)
    for t, grads in enumerate(grads_seq):
        opt.lr = lr_at(cfg, t)
        opt.step(grads)
    return params


def naive_reference(kind, cfg, params, grads_seq):
    """Float64 loops over parameters written straight from the update equations."""
    p = [{k: v.astype(np.float64) for k, v in layer.items()} for layer in params]
    state = {}
    for t_global, grads in enumerate(grads_seq):
        lr = lr_at(cfg, t_global)
        for i, layer in enumerate(p):
            for k in layer:
                g = None if grads[i] is None else grads[i].get(k)
                if g is None:
                    continue
                g = g.astype(np.float64)
                st = state.setdefault((i, k), {"t": 0})
                st["t"] += 1
                t = st["t"]
                wd = cfg.get("weight_decay", 0.0)
                if kind == "sgd":
                    g = g + wd * layer[k]
                    mu = cfg.get("momentum", 0.0)
                    if mu:
                        damp = cfg.get("dampening", 0.0)
                        st["buf"] = g.copy() if t == 1 else mu * st["buf"] + (1 - damp) * g
                        g = g + mu * st["buf"] if cfg.get("nesterov") else st["buf"]
                    layer[k] = layer[k] - lr * g
                else:
                    b1, b2 = cfg.get("betas", (0.9, 0.999))
                    eps = cfg.get("eps", 1e-8)
                    if kind == "adamw":
                        layer[k] = layer[k] * (1 - lr * wd)
                    else:
                        g = g + wd * layer[k]
                    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
                    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
                    mhat = st["m"] / (1 - b1 ** t)
                    vhat = st["v"] / (1 - b2 ** t)
                    layer[k] = layer[k] - lr * mhat / (np.sqrt(vhat) + eps)
    return p


@pytest.mark.parametrize("kind,cfg", CONFIGS)
def test_matches_naive_formula(kind, cfg, rng):
    params = make_params(rng)
    grads_seq = make_grads(rng)
    ref = naive_reference(kind, cfg, params, grads_seq)
    before = [{k: v.copy() for k, v in layer.items()} for layer in params]
    ours = run_ours(kind, cfg, params, grads_seq)
    for i, layer in enumerate(ours):
        for k in layer:
            assert not np.array_equal(layer[k], before[i][k])
            np.testing.assert_allclose(layer[k], ref[i][k], rtol=2e-5, atol=2e-6,
                                       err_msg=f"{kind} {cfg} params[{i}][{k}]")


@pytest.mark.torch
@pytest.mark.parametrize("kind,cfg", CONFIGS)
def test_matches_torch(kind, cfg, rng):
    torch = pytest.importorskip("torch")
    params = make_params(rng)
    grads_seq = make_grads(rng)
    tparams = [{k: torch.tensor(v.copy(), requires_grad=True) for k, v in layer.items()}
               for layer in params]
    flat = [tp for layer in tparams for tp in layer.values()]
    tcfg = dict(cfg)
    if kind == "sgd":
        topt = torch.optim.SGD(flat, **tcfg)
    elif kind == "adam":
        topt = torch.optim.Adam(flat, foreach=False, **tcfg)
    else:
        topt = torch.optim.AdamW(flat, foreach=False, **tcfg)
    for t, grads in enumerate(grads_seq):
        for group in topt.param_groups:
            group["lr"] = lr_at(cfg, t)
        for i, layer in enumerate(tparams):
            for k, tp in layer.items():
                g = None if grads[i] is None else grads[i].get(k)
                tp.grad = None if g is None else torch.tensor(g)
        topt.step()
    ours = run_ours(kind, cfg, params, grads_seq)
    for i, layer in enumerate(ours):
        for k in layer:
            np.testing.assert_allclose(layer[k], tparams[i][k].detach().numpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=f"{kind} {cfg} params[{i}][{k}]")


@pytest.mark.parametrize("kind,cfg", CONFIGS)
def test_state_dict_round_trip_continues_identically(kind, cfg, rng):
    params = make_params(rng)
    grads_seq = make_grads(rng, 10)
    twin = [{k: v.copy() for k, v in layer.items()} for layer in params]
    opt = build(kind, params, cfg)
    for g in grads_seq[:5]:
        opt.step(g)
    sd = opt.state_dict()
    assert int(sd["step"]) == 5
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    # a fresh optimiser on a copy of the weights, restored from the (copied) state
    for i, layer in enumerate(twin):
        for k in layer:
            layer[k][...] = params[i][k]
    opt2 = build(kind, twin, dict(cfg, lr=123.0))
    opt2.load_state_dict({k: v.copy() for k, v in sd.items()})
    assert opt2.lr == cfg["lr"] and opt2.step_count == 5
    for g in grads_seq[5:]:
        opt.step(g)
        opt2.step(g)
    for i, layer in enumerate(params):
        for k in layer:
            np.testing.assert_array_equal(layer[k], twin[i][k])
    assert set(opt.state_dict()) == set(opt2.state_dict())


def test_update_is_in_place(rng):
    params = make_params(rng)
    ids = [{k: id(v) for k, v in layer.items()} for layer in params]
    view = params[0]["w"].reshape(-1)  # a view held elsewhere (e.g. by a layer) sees the update
    before = view.copy()
    for opt in (SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3), Adam(params),
                AdamW(params, weight_decay=0.1)):
        for g in make_grads(rng, 3):
            opt.step(g)
    assert [{k: id(v) for k, v in layer.items()} for layer in params] == ids
    assert all(v.dtype == np.float32 for layer in params for v in layer.values())
    assert not np.array_equal(view, before)
    np.testing.assert_array_equal(view, params[0]["w"].reshape(-1))


def test_missing_gradient_leaves_param_and_state_alone(rng):
    params = make_params(rng)
    opt = Adam(params, lr=0.1)
    b_before = params[1]["b"].copy()
    opt.step([{"w": np.ones((3, 3, 2, 4), np.float32)}, {"w": np.ones((7, 5), np.float32),
                                                       "b": None}])
    np.testing.assert_array_equal(params[1]["b"], b_before)
    sd = opt.state_dict()
    assert "exp_avg/1/b" not in sd and int(sd["param_step/1/w"]) == 1
    # first Adam step moves every coordinate by lr * sign(g) (bias-corrected), whatever |g|
    opt2 = Adam([{"w": np.zeros(4, np.float32)}], lr=0.1)
    opt2.step([{"w": np.array([1e-3, -5.0, 2.0, -1e-2], np.float32)}])
    np.testing.assert_allclose(opt2.params[0]["w"], [-0.1, 0.1, -0.1, 0.1], rtol=1e-4)


def test_float64_grads_accepted(rng):
    params = make_params(rng)
    ref = make_params(np.random.default_rng(12345))
    grads = make_grads(rng, 1)[0]
    g64 = [{k: v.astype(np.float64) for k, v in layer.items()} for layer in grads]
    Adam(params, lr=0.1, weight_decay=0.1).step(g64)
    Adam(ref, lr=0.1, weight_decay=0.1).step(grads)
    for a, b in zip(params, ref):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6)
            assert a[k].dtype == np.float32


def test_clear_errors(rng):
    params = make_params(rng)
    opt = SGD(params, lr=0.1)
    with pytest.raises(KeyError, match="unknown parameter"):
        opt.step([{"v": np.zeros(3, np.float32)}, {}])
    with pytest.raises(ValueError, match="shape"):
        opt.step([{"b": np.zeros(5, np.float32)}, {}])
    with pytest.raises(ValueError, match="layers"):
        opt.step([{}])
    with pytest.raises(TypeError, match="float32"):
        SGD([{"w": np.zeros(3)}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(KeyError):
        Adam(params).load_state_dict({"step": np.array(1), "exp_avg/0/zzz": np.zeros(3)})
    # nothing was half-applied by the failed steps
    assert opt.step_count == 0


def test_lr_schedule_changes_step_size():
    p = {"w": np.zeros(1, np.float32)}
    opt = SGD([p], lr=1.0)
    opt.step([{"w": np.ones(1, np.float32)}])
    opt.lr = 0.25
    opt.step([{"w": np.ones(1, np.float32)}])
    assert p["w"][0] == pytest.approx(-1.25)
    assert math.isclose(float(opt.state_dict()["lr"]), 0.25)
