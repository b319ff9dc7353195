"""Optimisers on the project's parameter containers: SGD (momentum, Nesterov, weight decay), Adam, AdamW.

Parameters are a list of dicts of float32 arrays, one dict per layer (``[layer.params for layer in
...]``); gradients have the same structure.  ``opt.step(grads)`` updates the parameter arrays **in
place** -- the dicts keep the very same array objects, which the layers own -- using in-place numpy
operations and one preallocated scratch buffer (no per-step allocation proportional to the model).

A gradient that is missing (key absent, or ``None``; a whole layer may be ``None`` or ``{}``) means
"no gradient this step": that parameter and its optimiser state are left untouched, exactly like
a parameter whose ``.grad`` is None in PyTorch.  Each parameter therefore has its own step count
(Adam's bias correction uses it), as in ``torch.optim``.

The update rules follow ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` (single-tensor, non-amsgrad,
non-maximize code paths); see each class.  ``lr`` is a plain attribute that schedules may set
between steps.  ``state_dict()`` returns a flat ``{str: np.ndarray}`` (suitable for
``store.Run.checkpoint`` under an ``optim/`` prefix) and ``load_state_dict`` restores it so that a
resumed run continues bit-for-bit identically.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Shared bookkeeping: parameter validation, per-parameter step counts, state (de)serialisation.

    Subclasses define ``_buffers`` (names of per-parameter state arrays, created lazily on the
    first gradient) and ``_update(p, g, bufs, t, scratch)``.
    """

    _buffers: tuple[str, ...] = ()

    def __init__(self, params, lr: float):
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.params = self._normalise_params(params)
        self.lr = float(lr)
        self.step_count = 0                                  # number of step() calls
        n = len(self.params)
        self._param_steps = [{k: 0 for k in layer} for layer in self.params]
        self._state: list[dict[str, dict[str, np.ndarray]]] = [{} for _ in range(n)]
        max_size = max((p.size for layer in self.params for p in layer.values()), default=0)
        self._scratch = np.empty(2 * max_size, dtype=np.float32)

    @staticmethod
    def _normalise_params(params) -> list[dict]:
        if isinstance(params, Mapping):
            params = [params]
        if not isinstance(params, Sequence):
            raise TypeError("params must be a list of dicts of arrays (one dict per layer), "
                            f"got {type(params).__name__}")
        out = []
        for i, layer in enumerate(params):
            if not isinstance(layer, Mapping):
                raise TypeError(f"params[{i}] must be a dict of arrays, got {type(layer).__name__}")
            for k, p in layer.items():
                if not isinstance(p, np.ndarray) or p.dtype != np.float32:
                    what = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
                    raise TypeError(f"params[{i}][{k!r}] must be a float32 numpy array, got {what}")
                if not p.flags.writeable:
                    raise ValueError(f"params[{i}][{k!r}] is read-only; the optimiser updates in place")
            out.append(layer)
        return out

    def _scratch_views(self, shape, size):
        return (self._scratch[:size].reshape(shape), self._scratch[size:2 * size].reshape(shape))

    def step(self, grads) -> None:
        """Apply one update to every parameter that has a gradient (in place)."""
        if isinstance(grads, Mapping) and len(self.params) == 1:
            grads = [grads]
        if len(grads) != len(self.params):
            raise ValueError(f"got gradients for {len(grads)} layers, the optimiser has "
                             f"{len(self.params)}")
        # validate everything first so that a bad gradient leaves no layer half-updated
        todo = []
        for i, (layer, glayer) in enumerate(zip(self.params, grads)):
            if not glayer:
                continue
            for k, g in glayer.items():
                if k not in layer:
                    raise KeyError(f"gradient for unknown parameter params[{i}][{k!r}]; "
                                   f"known: {sorted(layer)}")
                if g is None:
                    continue
                g = np.asarray(g)
                if g.shape != layer[k].shape:
                    raise ValueError(f"gradient of params[{i}][{k!r}] has shape {g.shape}, "
                                     f"the parameter has {layer[k].shape}")
                todo.append((i, k, g))
        self.step_count += 1
        for i, k, g in todo:
            p = self.params[i][k]
            bufs = self._state[i].get(k)
            if bufs is None:
                bufs = {name: np.zeros_like(p) for name in self._buffers}
                self._state[i][k] = bufs
            self._param_steps[i][k] += 1
            self._update(p, g, bufs, self._param_steps[i][k],
                         self._scratch_views(p.shape, p.size))

    def _update(self, p, g, bufs, t, scratch):  # pragma: no cover - interface
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat ``{key: array}``: ``"step"`` (number of step() calls), ``"lr"``, and per parameter
        ``"param_step/LAYER/KEY"`` plus its buffers ``"BUFFER/LAYER/KEY"`` (copies)."""
        out = {"step": np.array(self.step_count, dtype=np.int64),
               "lr": np.array(self.lr, dtype=np.float64)}
        for i, layer in enumerate(self._param_steps):
            for k, t in layer.items():
                if t == 0:
                    continue
                out[f"param_step/{i}/{k}"] = np.array(t, dtype=np.int64)
                for name, arr in self._state[i].get(k, {}).items():
                    out[f"{name}/{i}/{k}"] = arr.copy()
        return out

    def load_state_dict(self, d: Mapping[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict` (step counts, lr and buffers); parameters are not touched."""
        if "step" not in d:
            raise KeyError("optimiser state has no 'step' entry; is it from state_dict()?")
        state: list[dict[str, dict[str, np.ndarray]]] = [{} for _ in self.params]
        psteps = [{k: 0 for k in layer} for layer in self.params]
        for key, value in d.items():
            if key in ("step", "lr"):
                continue
            parts = key.split("/", 2)
            if len(parts) != 3:
                raise KeyError(f"unexpected optimiser state key {key!r}")
            name, i, k = parts[0], int(parts[1]), parts[2]
            if i >= len(self.params) or k not in self.params[i]:
                raise KeyError(f"optimiser state {key!r} names a parameter this optimiser "
                               "does not have")
            if name == "param_step":
                psteps[i][k] = int(np.asarray(value))
                continue
            if name not in self._buffers:
                raise KeyError(f"optimiser state {key!r}: {type(self).__name__} has no buffer "
                               f"{name!r} (buffers: {self._buffers})")
            value = np.asarray(value)
            if value.shape != self.params[i][k].shape:
                raise ValueError(f"optimiser state {key!r} has shape {value.shape}, the parameter "
                                 f"has {self.params[i][k].shape}")
            state[i].setdefault(k, {})[name] = value.astype(np.float32, copy=True)
        for i, layer in enumerate(psteps):
            for k, t in layer.items():
                bufs = state[i].get(k, {})
                if t == 0 and bufs:
                    raise KeyError(f"optimiser state for params[{i}][{k!r}] lacks its param_step")
                missing = set(self._buffers) - set(bufs)
                if t > 0 and missing:
                    raise KeyError(f"optimiser state for params[{i}][{k!r}] lacks {sorted(missing)}")
                if t > 0:
                    state[i][k] = bufs
        self._state = state
        self._param_steps = psteps
        self.step_count = int(np.asarray(d["step"]))
        if "lr" in d:
            self.lr = float(np.asarray(d["lr"]))

    def zero_state(self) -> None:
        """Forget all optimiser state (buffers and step counts); lr is kept."""
        self._state = [{} for _ in self.params]
        self._param_steps = [{k: 0 for k in layer} for layer in self.params]
        self.step_count = 0

    def __repr__(self):
        n = sum(p.size for layer in self.params for p in layer.values())
        return f"{type(self).__name__}(lr={self.lr}, {len(self.params)} layers, {n} weights)"


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``::

        g <- g + weight_decay * p                      (L2 added to the gradient)
        if momentum:  b <- g                 on a parameter's first step
                      b <- momentum * b + (1 - dampening) * g   afterwards
                      g <- g + momentum * b  (nesterov)   or   g <- b
        p <- p - lr * g
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, dampening: float = 0.0):
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        self.dampening = float(dampening)
        self._buffers = ("momentum_buffer",) if momentum != 0 else ()

    def _update(self, p, g, bufs, t, scratch):
        d, _ = scratch
        np.copyto(d, g, casting="same_kind")
        if self.weight_decay != 0:
            np.multiply(p, self.weight_decay, out=scratch[1])
            d += scratch[1]
        if self.momentum != 0:
            buf = bufs["momentum_buffer"]
            if t == 1:
                np.copyto(buf, d)
            else:
                buf *= self.momentum
                if self.dampening != 0:
                    np.multiply(d, 1.0 - self.dampening, out=scratch[1])
                    buf += scratch[1]
                else:
                    buf += d
            if self.nesterov:
                np.multiply(buf, self.momentum, out=scratch[1])
                d += scratch[1]
            else:
                np.copyto(d, buf)
        d *= self.lr
        p -= d


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), as ``torch.optim.Adam``; ``decoupled=True`` gives AdamW
    (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``::

        L2 (decoupled=False):  g <- g + weight_decay * p
        AdamW (decoupled=True): p <- p * (1 - lr * weight_decay)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    with t the parameter's own step count.  Note torch's AdamW defaults to weight_decay=0.01;
    here the default is 0 for both.
    """

    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError("eps and weight_decay must be >= 0")
        self.betas = (float(b1), float(b2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decoupled = bool(decoupled)

    def _update(self, p, g, bufs, t, scratch):
        b1, b2 = self.betas
        m, v = bufs["exp_avg"], bufs["exp_avg_sq"]
        s0, s1 = scratch
        if self.weight_decay != 0 and self.decoupled:
            p *= 1.0 - self.lr * self.weight_decay
        if self.weight_decay != 0 and not self.decoupled:
            np.multiply(p, self.weight_decay, out=s0)
            s0 += g
            g = s0
        # m <- b1 m + (1 - b1) g
        m *= b1
        np.multiply(g, 1.0 - b1, out=s1)
        m += s1
        # v <- b2 v + (1 - b2) g^2
        v *= b2
        np.multiply(g, g, out=s1)
        s1 *= 1.0 - b2
        v += s1
        bias1 = 1.0 - b1 ** t
        bias2_sqrt = math.sqrt(1.0 - b2 ** t)
        step_size = self.lr / bias1
        # denom = sqrt(v) / sqrt(bias2) + eps ; p <- p - step_size * m / denom
        np.sqrt(v, out=s1)
        s1 /= bias2_sqrt
        s1 += self.eps
        np.divide(m, s1, out=s1)
        s1 *= step_size
        p -= s1


class AdamW(Adam):
    """``Adam(..., decoupled=True)``: decoupled weight decay (torch.optim.AdamW semantics)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)
