r"""PhiNet / the CA3–CA1 delay model on images: backprop (as published) and local (delta rules).

The hippocampal reading of non-contrastive learning (Chen, Zhang, Cameron & Sejnowski, Neuron 2024;
PhiNets, Ishikawa, Yamada, Bao & Takezawa, ICLR 2025).  Three inputs per image: two augmented
views x₁, x₂ (the entorhinal input "now" and "a moment later") and the original image x (the
direct entorhinal input to CA1).  With f the DG/CA3 encoder, h the CA3 predictor (recurrent
collaterals) and g the CA3→CA1 (Schaffer collateral) map:

    CA3 mismatch   e₃ = ∂D(h(f(x₁)), SG f(x₂)) / ∂h        (CA3 predicts the next input's code)
    CA1 mismatch   e₁ = ∂D(g(h(f(x₁))), SG f(x)) / ∂g      (CA1 compares the delayed CA3 output
                                                            with the direct EC input)
    L = D(h(f(x₁)), SG f(x₂)) + λ · D(g(h(f(x₁))), SG f(x))      symmetrised over x₁ ↔ x₂,

with D the negative cosine similarity (``loss="cosine"``, SimSiam's D) or ½‖p − z‖²
(``loss="l2"``, the form of the eigenvalue analysis), batch means.  SG (stop-gradient) is the
transmission delay: the target arrives after the prediction was made, so it acts as a fixed
teacher and no gradient flows into it.  ``λ = ca1_weight``; with λ = 0 the rule is SimSiam.

Mode ``backprop`` -- PhiNet as published: f = encoder → projector (Dense-ReLU-Dense, as SimSiam's),
h = predictor MLP, g = second predictor MLP; ∂L/∂θ for every parameter by backprop through every
block.  The projector and h are drawn exactly as in ``ssl.EndToEnd(loss="simsiam")`` for the same
seed, so λ = 0 reproduces SimSiam's update step for step (tests/test_hippocampus.py).

Mode ``local`` -- the same loss computed per block with linear CA3/CA1 maps, learnt by delta rules.
For block l with code z = GAP(block output) (row vectors, N samples; s = source view, t = the other
view, o = original image):

    CA3 prediction     P = z_s H + b_H            e₃ = ∂D(P, SG z_t)/∂P     (CA3 mismatch)
    CA1 prediction     Q = P G + b_G              e₁ = λ ∂D(Q, SG z_o)/∂Q   (CA1 mismatch)

    ΔG  = −η Pᵀ e₁,             Δb_G = −η Σ_n e₁           CA1: pre = CA3 output, post = CA1 mismatch
    ΔH  = −η z_sᵀ (e₃ + e₁Gᵀ),  Δb_H = −η Σ_n (e₃ + e₁Gᵀ)  CA3: pre = block code, post = CA3 mismatch
                                                             plus CA1's mismatch fed back through
                                                             the Schaffer synapses (one layer)
    δz_s = e₃ Hᵀ                                            the block's error: CA3 mismatch fed back
                                                             through one layer
    ΔW_block = −η Σ_positions x_i · ρ'(a_j)·[pool winner]·δz_{s,j}/(H·W)     (pre × post × error)

The block weights get the post-synaptic factor ρ'(a_j) routed through the max-pool to the winner
and divided by the number of positions of the GAP, times their pre-synaptic input x_i: the same
three-factor product as CLAPP (``rules/clapp.py``), computed here by the block's own backward pass
(one conv layer and its nonlinearity; nothing crosses the block boundary).  No weight is
transported across more than one layer: G and H get the exact gradient of the block-local loss L_l;
the block gets the gradient of the CA3 term D(P, SG z_t) only, because CA1's mismatch would have
to travel back through two layers (G then H) to reach it.  This is the one approximation of the
local mode, and the test checks it: ΔG = −∂L_l/∂G, ΔH = −∂L_l/∂H, ΔW = −∂L₃,l/∂W by finite
differences.  Each block has its own optimiser (no gradient crosses a block boundary), which applies
these updates (SGD: exactly −η·update, plus the weight decay −ηρθ; Adam: rescaled per parameter);
the next block sees this block's output.
"""
from __future__ import annotations

import numpy as np

from ..encoders import Block
from ..errors import UserError
from .base import Rule, make_optimizer

MODES = ("backprop", "local")
LOSSES = ("cosine", "l2")


def _loss_fn(name: str):
    from .. import losses

    return losses.simsiam_cosine if name == "cosine" else losses.simsiam_l2


def local_block_update(Zs, Zt, Zo, H: dict, G: dict, loss: str = "cosine", ca1_weight: float = 1.0):
    """The CA3–CA1 delta rules of one block (see the module docstring).

    ``Zs`` (N, d): source codes (view 1 of each image, then view 2 when symmetrised); ``Zt``: the
    codes the CA3 prediction is compared with (the other view); ``Zo``: the original image's codes
    (the direct EC input to CA1).  ``H``/``G`` are ``{"w": (d, d), "b": (d,)}`` (row-vector
    convention: P = Zs w + b).

    Returns ``(ca3_loss, ca1_loss, dZs, dH, dG)``: the two loss terms (CA1 term already × λ), the
    error sent to the block (CA3 mismatch only, through Hᵀ), and the gradients of the block-local
    loss L = ca3 + λ·ca1 with respect to H and G (the optimiser applies minus them).
    """
    fn = _loss_fn(loss)
    P = Zs @ H["w"] + H["b"]
    l3, e3 = fn(P, Zt)
    Q = P @ G["w"] + G["b"]
    l1, e1 = fn(Q, Zo)
    e1 = (ca1_weight * e1).astype(P.dtype)
    dG = {"w": P.T @ e1, "b": e1.sum(axis=0)}
    eP = e3 + e1 @ G["w"].T                  # CA3's error: own mismatch + CA1 feedback (one layer)
    dH = {"w": Zs.T @ eP, "b": eP.sum(axis=0)}
    dZs = e3 @ H["w"].T                      # to the block: CA3 mismatch through one layer
    return float(l3), float(ca1_weight * l1), dZs.astype(Zs.dtype), dH, dG


def _linear(d: int, rng: np.random.Generator, scale: float) -> dict:
    """A d×d map initialised as the identity plus small noise (the prediction starts as 'same')."""
    w = np.eye(d) + scale * rng.standard_normal((d, d)) / np.sqrt(d)
    return {"w": w.astype(np.float32), "b": np.zeros(d, np.float32)}


class PhiNet(Rule):
    """CA3–CA1 delay model / PhiNet on an image encoder (see the module docstring).

    Parameters: ``mode`` backprop | local; ``loss`` cosine | l2; ``ca1_weight`` λ (0 = SimSiam);
    ``optimizer``/``lr``/``weight_decay`` as elsewhere (weight decay ρ acts on every parameter:
    encoder, projector, CA3 and CA1 maps); ``symmetric`` adds the x₂ → x₁ prediction;
    ``proj_hidden``/``proj_dim`` size the projector and predictors in backprop mode;
    ``init_noise`` the spread of the local mode's identity-initialised CA3/CA1 maps.
    """

    def __init__(self, encoder, view_cfg, mode: str = "backprop", loss: str = "cosine",
                 ca1_weight: float = 1.0, norm=None, lr: float = 0.05, optimizer: str = "sgd",
                 weight_decay: float = 0.0, symmetric: bool = True, proj_hidden: int = 512,
                 proj_dim: int = 128, init_noise: float = 0.1, seed: int = 0):
        super().__init__()
        if mode not in MODES:
            raise UserError(f"unknown PhiNet mode {mode!r}; allowed: {', '.join(MODES)}")
        if loss not in LOSSES:
            raise UserError(f"unknown PhiNet loss {loss!r}; allowed: {', '.join(LOSSES)}")
        if ca1_weight < 0:
            raise UserError(f"ca1_weight must be >= 0, got {ca1_weight}")
        self.mode, self.loss, self.lam = mode, loss, float(ca1_weight)
        self.view_cfg, self.norm, self.symmetric = view_cfg, norm, bool(symmetric)
        self.name = "phinet" if mode == "backprop" else "ca3ca1_local"
        self.local = mode == "local"
        if mode == "backprop":
            from .ssl import mlp

            rng = np.random.default_rng([seed, 5])          # as ssl.EndToEnd: projector, then h
            d = encoder.code_dims[-1]
            self.proj = mlp([d, proj_hidden, proj_dim], rng)
            self.pred = mlp([proj_dim, proj_hidden, proj_dim], rng)
            self.ca1 = mlp([proj_dim, proj_hidden, proj_dim], np.random.default_rng([seed, 9]))
            self.modules.update(proj=self.proj.params, pred=self.pred.params, ca1=self.ca1.params)
            self.optimizers["all"] = make_optimizer(
                list(encoder.params) + self.proj.params + self.pred.params + self.ca1.params,
                optimizer, lr, weight_decay)
        else:
            rng = np.random.default_rng([seed, 10])
            self.H, self.G = [], []
            for i, (b, d) in enumerate(zip(encoder.blocks, encoder.code_dims)):
                H, G = _linear(d, rng, init_noise), _linear(d, rng, init_noise)
                self.H.append(H)
                self.G.append(G)
                self.modules[f"ca3_{i}"] = [H]
                self.modules[f"ca1_{i}"] = [G]
                self.optimizers[f"block{i}"] = make_optimizer(b.params + [H, G], optimizer, lr,
                                                              weight_decay)

    def _pairs(self, n):
        """Source rows, target rows (indices into the 2N views) of the CA3 predictions."""
        if self.symmetric:
            return np.arange(2 * n), np.concatenate([np.arange(n, 2 * n), np.arange(n)])
        return np.arange(n), np.arange(n, 2 * n)

    def step(self, encoder, batch: dict) -> dict:
        from .ssl import two_views

        n = len(batch["x"])
        v = two_views(batch["x"], self.view_cfg, batch["rng"], self.norm)
        if self.mode == "backprop":
            return self._step_backprop(encoder, v, batch["x"], n)
        return self._step_local(encoder, v, batch["x"], n)

    def backprop_grads(self, encoder, v, x0, n):
        """Gradients of L (backprop mode) for the views ``v`` (2N) and originals ``x0`` (N):
        ``(encoder grads + projector, h and g grads, metrics)`` in the optimiser's order."""
        from ..evaluate import collapse_std
        from .ssl import backward_all, encode

        fn = _loss_fn(self.loss)
        outs, caches, z = encode(encoder, v)
        g, gc = self.proj.forward(z)
        p, pc = self.pred.forward(g)
        src, tgt = self._pairs(n)
        l3, dp = fn(p[src], g[tgt])
        dp_full = np.zeros_like(p)
        dp_full[src] = dp
        l1 = 0.0
        ca1_grads = [{k: np.zeros_like(a) for k, a in q.items()} for q in self.ca1.params]
        if self.lam > 0:
            f0 = self.proj(Block.code(encoder.outputs(x0)[-1]))     # SG: the direct EC input
            q, qc = self.ca1.forward(p[src])
            l1, dq = fn(q, f0[src % n])
            dps, ca1_grads = self.ca1.backward(qc, (self.lam * dq).astype(q.dtype), need_dx=True)
            dp_full[src] += dps
            l1 *= self.lam
        dg, pred_g = self.pred.backward(pc, dp_full.astype(p.dtype), need_dx=True)
        dz, proj_g = self.proj.backward(gc, dg, need_dx=True)
        grads = backward_all(encoder, caches, outs, dz.astype(z.dtype))
        metrics = {"loss": float(l3 + l1), "ca3_mismatch": float(l3), "ca1_mismatch": float(l1),
                   "collapse_std": collapse_std(g)}
        return grads + proj_g + pred_g + ca1_grads, metrics

    def _step_backprop(self, encoder, v, x0, n):
        grads, metrics = self.backprop_grads(encoder, v, x0, n)
        self.optimizers["all"].step(grads)
        return metrics

    def local_grads(self, encoder, v, x0, n):
        """The local mode's updates (as gradients: the optimiser applies minus them) for every
        block, ``[block grads + [dH, dG]] per block``, and the metrics.  Block l+1 sees block l's
        output computed before block l's update, so computing all first changes nothing."""
        from ..evaluate import collapse_std

        src, tgt = self._pairs(n)
        metrics, h, h0, per_block = {}, v, x0, []
        for i, blk in enumerate(encoder.blocks):
            out, cache = blk.forward(h)
            out0 = blk(h0)                      # the original image: target only (no cache)
            Z, Zo = Block.code(out), Block.code(out0)
            l3, l1, dZs, dH, dG = local_block_update(Z[src], Z[tgt], Zo[src % n], self.H[i],
                                                     self.G[i], self.loss, self.lam)
            dZ = np.zeros_like(Z)
            dZ[src] = dZs
            _, bg = blk.backward(cache, Block.code_backward(out.shape, dZ), need_dx=False)
            per_block.append(bg + [dH, dG])
            metrics[f"ca3_mismatch_b{i + 1}"] = l3
            metrics[f"ca1_mismatch_b{i + 1}"] = l1
            h, h0 = out, out0                   # the next block sees this block's output
        L = len(encoder.blocks)
        metrics["ca3_mismatch"] = metrics[f"ca3_mismatch_b{L}"]
        metrics["ca1_mismatch"] = metrics[f"ca1_mismatch_b{L}"]
        metrics["loss"] = metrics["ca3_mismatch"] + metrics["ca1_mismatch"]
        metrics["collapse_std"] = collapse_std(Z)
        return per_block, metrics

    def _step_local(self, encoder, v, x0, n):
        per_block, metrics = self.local_grads(encoder, v, x0, n)
        for i, grads in enumerate(per_block):
            self.optimizers[f"block{i}"].step(grads)
        return metrics
