"""Supervised backprop: the reference every local rule is compared with.

Loss: mean softmax cross-entropy of a linear read-out on the last block,

    L = -(1/N) Σ_n log softmax(W h_n + b)_{y_n},

with the gradient chained backwards through every block (``need_dx`` everywhere but the input).
Not biologically plausible: the error at the read-out is transported back through the transposes
of all forward weights (weight transport) and every block keeps its activations for the backward
pass.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .base import Rule, make_optimizer

HEADS = ("flatten", "gap", "pool2")


def make_head(kind: str, in_shape: tuple, n_classes: int, rng: np.random.Generator):
    """A read-out on a block's output: ``flatten``, ``gap`` (global average pool) or ``pool2``
    (average-pool to 2x2, as the protocol's probe), followed by one dense layer."""
    from ..encoders import Block
    from ..layers import AvgPool2d, Dense, Flatten, GlobalAvgPool

    if kind not in HEADS:
        raise UserError(f"unknown head {kind!r}; allowed: {', '.join(HEADS)}")
    layers = []
    if len(in_shape) == 3:
        if kind == "gap":
            layers.append(GlobalAvgPool())
        else:
            if kind == "pool2":
                h, w = in_shape[:2]
                if h % 2 or w % 2:
                    raise UserError(f"head 'pool2' needs an even map size, got {in_shape}")
                layers.append(AvgPool2d(h // 2))
            layers.append(Flatten())
    shape = tuple(in_shape)
    for layer in layers:
        shape = tuple(layer.output_shape(shape))
    layers.append(Dense(shape[0], n_classes, rng=rng))
    return Block(layers, in_shape)


class Supervised(Rule):
    """End-to-end supervised backprop with cross-entropy on a linear head."""

    name = "supervised"
    local = False

    def __init__(self, encoder, n_classes: int, lr: float = 1e-3, optimizer: str = "adam",
                 weight_decay: float = 0.0, head: str = "flatten", seed: int = 0):
        super().__init__()
        rng = np.random.default_rng([seed, 1])
        self.head = make_head(head, encoder.out_shapes[-1], n_classes, rng)
        self.modules["head"] = self.head.params
        self.optimizers["all"] = make_optimizer(encoder.params + self.head.params, optimizer, lr,
                                                weight_decay)

    def logits(self, encoder, x):
        return self.head(encoder.outputs(x)[-1])

    def step(self, encoder, batch: dict) -> dict:
        """One Adam/SGD step on the batch's mean cross-entropy.  On a large batch the forward and
        backward passes run on one slice of images per core, each slice through every layer on
        its own replica of the network (:class:`~bioplausible.layers._parallel.DataParallel`);
        the slices' gradients, weighted by their share of the batch, are summed -- the same
        gradient as the whole batch at once."""
        from ..layers._parallel import DataParallel, weighted_sum

        x, y = batch["x"], batch["y"]
        encoder.check_input(x)
        n = len(x)
        if getattr(self, "_dp", None) is None:
            self._dp = DataParallel()
        slices = self._dp.slices(n, n * max(int(np.prod(s)) for s in encoder.out_shapes))
        blocks = list(encoder.blocks) + [self.head]
        if len(slices) == 1:
            loss, correct, grads = self._forward_backward(blocks, x, y)
        else:
            res = self._dp.run(blocks, slices,
                               lambda bl, b0, b1: self._forward_backward(bl, x[b0:b1], y[b0:b1]))
            share = [(b1 - b0) / n for b0, b1 in slices]
            loss = sum(r[0] * f for r, f in zip(res, share))
            correct = sum(r[1] for r in res)
            grads = weighted_sum([r[2] for r in res], share)
        self.optimizers["all"].step(grads)
        return {"loss": float(loss), "acc": float(correct) / max(1, n)}

    @staticmethod
    def _forward_backward(blocks, x, y):
        """(mean loss, number correct, gradients of every layer) of ``blocks`` (encoder blocks
        then the head) on the images ``x``."""
        from ..losses import cross_entropy

        caches, h = [], x
        for b in blocks:
            h, c = b.forward(h)
            caches.append(c)
        loss, dh = cross_entropy(h, y)
        correct = int(np.sum(np.argmax(h, axis=1) == np.asarray(y)))
        grads = []
        for bi in range(len(blocks) - 1, -1, -1):
            dh, g = blocks[bi].backward(caches[bi], dh, need_dx=bi > 0)
            grads = g + grads
        return float(loss), correct, grads

    def predict(self, encoder, x, batch_size: int = 1000) -> np.ndarray:
        return np.concatenate([self.logits(encoder, x[i:i + batch_size]).argmax(1)
                               for i in range(0, len(x), batch_size)])
