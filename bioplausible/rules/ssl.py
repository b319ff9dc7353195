"""Self-supervised backprop baselines on the same encoder as the local rules.

All of them see two augmented views of each image (``views.augment`` with the protocol's preset)
and train with Adam.  None is biologically plausible: gradients travel back through every block
(except in the layer-wise rule, which stops them at block boundaries but still backpropagates
inside a block and through a projection head).

* ``infonce`` -- SimCLR (Chen et al. 2020): z = code of the last block, projection head
  g = Dense-ReLU-Dense, NT-Xent loss with temperature τ over the 2N views.
* ``hinge_cpc`` -- the CLAPP hinge loss at the top block only, backprop through all blocks
  (Illing et al. 2021's "end-to-end hinge CPC" control): u = z₂ᵀ W c₁ with c₁ the code of view 1,
  z₂ the code of view 2 of the same image (y = +1) or of another image (y = −1).
* ``simsiam`` -- Chen & He 2021: projector + predictor h, loss ½D(p₁, sg z₂) + ½D(p₂, sg z₁),
  D = negative cosine.
* ``byol`` -- Grill et al. 2020: online projector + predictor, target = exponential moving average
  (τ_ema) of encoder and projector, normalised L2 loss, symmetrised.
* ``greedy_infomax`` (``LayerWise``) -- Löwe et al. 2019: every block has its own projection head and
  NT-Xent loss on its code; gradients stop at block boundaries.
"""
from __future__ import annotations

import numpy as np

from ..encoders import Block
from ..views import derangement
from ..errors import UserError
from .base import Rule, make_optimizer


def mlp(sizes: list[int], rng: np.random.Generator) -> Block:
    """Dense-ReLU-...-Dense head on vectors of ``sizes[0]`` features."""
    from ..layers import Dense, ReLU

    layers = []
    for i in range(len(sizes) - 1):
        layers.append(Dense(sizes[i], sizes[i + 1], rng=rng))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Block(layers, (sizes[0],))


def one_view(x: np.ndarray, view_cfg, rng: np.random.Generator, norm=None) -> np.ndarray:
    """One augmented view of each image of ``x`` (see :func:`two_views` for ``norm``)."""
    from ..views import augment

    if norm is not None:
        mean, std = (np.asarray(a, np.float32) for a in norm)
        return (augment(x * std + mean, view_cfg, rng) - mean) / std
    return augment(x, view_cfg, rng)


def two_views(x: np.ndarray, view_cfg, rng: np.random.Generator, norm=None) -> np.ndarray:
    """[view1; view2] stacked on the batch axis (2N images).

    Augmentations work on pixel values in [0, 1]; with ``norm = (mean, std)`` the batch is
    normalised data, which is mapped back to [0, 1], augmented, and normalised again.
    """
    return np.concatenate([one_view(x, view_cfg, rng, norm), one_view(x, view_cfg, rng, norm)])


def encode(encoder, x):
    """Forward through every block; returns (block outputs, caches, codes of the last block)."""
    outs, caches = encoder.forward(x)
    return outs, caches, Block.code(outs[-1])


def backward_all(encoder, caches, outs, dz_last):
    """Backprop a gradient on the last block's code through every block."""
    dh = Block.code_backward(outs[-1].shape, dz_last)
    grads = []
    for bi in range(len(encoder.blocks) - 1, -1, -1):
        dh, g = encoder.blocks[bi].backward(caches[bi], dh, need_dx=bi > 0)
        grads = g + grads
    return grads


SSL_LOSSES = ("infonce", "hinge_cpc", "simsiam", "byol")


class EndToEnd(Rule):
    """End-to-end self-supervised backprop with one of ``SSL_LOSSES`` on the last block's code."""

    local = False

    def __init__(self, encoder, view_cfg, loss: str = "infonce", norm=None, lr: float = 1e-3,
                 optimizer: str = "adam", weight_decay: float = 0.0, temperature: float = 0.2,
                 proj_hidden: int = 512, proj_dim: int = 128, ema: float = 0.99, seed: int = 0):
        super().__init__()
        if loss not in SSL_LOSSES:
            raise UserError(f"unknown self-supervised loss {loss!r}; allowed: {', '.join(SSL_LOSSES)}")
        self.name, self.loss, self.view_cfg, self.norm = loss, loss, view_cfg, norm
        self.temperature, self.ema = temperature, ema
        rng = np.random.default_rng([seed, 5])
        d = encoder.code_dims[-1]
        params = list(encoder.params)
        self.proj = self.pred = None
        if loss in ("infonce", "simsiam", "byol"):
            self.proj = mlp([d, proj_hidden, proj_dim], rng)
            self.modules["proj"] = self.proj.params
            params += self.proj.params
        if loss in ("simsiam", "byol"):
            self.pred = mlp([proj_dim, proj_hidden, proj_dim], rng)
            self.modules["pred"] = self.pred.params
            params += self.pred.params
        if loss == "hinge_cpc":
            self.W = {"w": (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)}
            self.modules["w_pred"] = [self.W]
            params.append(self.W)
        if loss == "byol":
            self.target = encoder.copy()
            self.target_proj = mlp([d, proj_hidden, proj_dim], rng)
            for p, q in zip(self.target_proj.params, self.proj.params):
                for k in p:
                    p[k][...] = q[k]
            self.modules["target_enc"] = self.target.params
            self.modules["target_proj"] = self.target_proj.params
        self.optimizers["all"] = make_optimizer(params, optimizer, lr, weight_decay)

    def step(self, encoder, batch: dict) -> dict:
        from .. import losses
        from ..evaluate import collapse_std

        rng = batch["rng"]
        n = len(batch["x"])
        v = two_views(batch["x"], self.view_cfg, rng, self.norm)
        outs, caches, z = encode(encoder, v)
        grads_extra = []
        metrics = {}
        if self.loss == "infonce":
            g, gc = self.proj.forward(z)
            loss, d1, d2 = losses.info_nce(g[:n], g[n:], self.temperature)
            dz, pg = self.proj.backward(gc, np.concatenate([d1, d2]), need_dx=True)
            grads_extra = pg
        elif self.loss == "hinge_cpc":
            c, zt = z[:n], z[n:]
            other = derangement(n, rng)
            y = np.where(rng.random(n) < 0.5, 1.0, -1.0).astype(np.float32)
            target = np.where(y[:, None] > 0, zt, zt[other])
            loss, dzt, dc, dW = losses.clapp_hinge(target, c, self.W["w"], y)
            dz = np.zeros_like(z)
            dz[:n] = dc
            np.add.at(dz, n + np.where(y > 0, np.arange(n), other), dzt)
            grads_extra = [{"w": dW}]
        else:  # simsiam / byol
            g, gc = self.proj.forward(z)
            p, pc = self.pred.forward(g)
            if self.loss == "simsiam":
                tgt = g
                lossfn = losses.simsiam_cosine
            else:
                tz = Block.code(self.target.outputs(v)[-1])
                tgt = self.target_proj(tz)
                lossfn = losses.byol_l2
            l1, dp1 = lossfn(p[:n], tgt[n:])
            l2, dp2 = lossfn(p[n:], tgt[:n])
            loss = 0.5 * (l1 + l2)
            dg, pred_g = self.pred.backward(pc, 0.5 * np.concatenate([dp1, dp2]), need_dx=True)
            dz, proj_g = self.proj.backward(gc, dg, need_dx=True)
            grads_extra = proj_g + pred_g
            metrics["collapse_std"] = collapse_std(g)
        grads = backward_all(encoder, caches, outs, dz.astype(np.float32))
        self.optimizers["all"].step(grads + grads_extra)
        if self.loss == "byol":
            self._ema_update(encoder)
        metrics["loss"] = float(loss)
        return metrics

    def _ema_update(self, encoder):
        m = self.ema
        for tp, op in zip(self.target.params + self.target_proj.params,
                          encoder.params + self.proj.params):
            for k in tp:
                tp[k] *= m
                tp[k] += (1 - m) * op[k]


class LayerWise(Rule):
    """Greedy InfoMax: a projection head and NT-Xent loss per block, no gradient across blocks."""

    name = "greedy_infomax"
    local = True   # local between blocks (still backprop within a block and its head)

    def __init__(self, encoder, view_cfg, norm=None, lr: float = 1e-3, optimizer: str = "adam",
                 weight_decay: float = 0.0, temperature: float = 0.2, proj_dim: int = 128,
                 proj_hidden: int = 512, seed: int = 0):
        super().__init__()
        self.view_cfg, self.temperature, self.norm = view_cfg, temperature, norm
        rng = np.random.default_rng([seed, 6])
        self.heads = [mlp([d, proj_hidden, proj_dim], rng) for d in encoder.code_dims]
        for i, (b, h) in enumerate(zip(encoder.blocks, self.heads)):
            self.modules[f"head{i}"] = h.params
            self.optimizers[f"block{i}"] = make_optimizer(b.params + h.params, optimizer, lr,
                                                          weight_decay)

    def step(self, encoder, batch: dict) -> dict:
        from .. import losses

        n = len(batch["x"])
        h = two_views(batch["x"], self.view_cfg, batch["rng"], self.norm)
        metrics = {}
        for i, (blk, head) in enumerate(zip(encoder.blocks, self.heads)):
            out, cache = blk.forward(h)          # input is the previous block's output: no gradient flows back
            z = Block.code(out)
            g, gc = head.forward(z)
            loss, d1, d2 = losses.info_nce(g[:n], g[n:], self.temperature)
            dz, hg = head.backward(gc, np.concatenate([d1, d2]), need_dx=True)
            _, bg = blk.backward(cache, Block.code_backward(out.shape, dz), need_dx=False)
            self.optimizers[f"block{i}"].step(bg + hg)
            metrics[f"loss_b{i + 1}"] = float(loss)
            h = out
        metrics["loss"] = metrics[f"loss_b{len(encoder.blocks)}"]
        return metrics
