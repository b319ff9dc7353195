"""Encoders built from named recipes (``models/NAME.toml``).

An encoder is a list of **blocks**; a block is a list of layers (e.g. conv -> ReLU -> max-pool) and is
the unit of locality: a local rule updates a block from what the block itself sees and never sends a
gradient across a block boundary.  Each block's *code* ``z_l`` is the global average pool of its
output (the output itself for a dense block).

A recipe is TOML::

    name = "conv3"
    [[block]]
    layers = [ { type = "conv2d", out = 32, kernel = 3, padding = 1 },
               { type = "relu" }, { type = "maxpool2d", size = 2 } ]

Input sizes (channels, features) are taken from the data: ``build("conv3", in_shape=(32, 32, 3),
seed=0)``.  The same recipe and the same seed give the same initial weights, whichever rule trains
the encoder afterwards.
"""
from __future__ import annotations

import inspect
import os
import tomllib
from pathlib import Path

import numpy as np

from .errors import UserError

_REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


def recipe_dirs() -> list[Path]:
    """Folders searched for ``NAME.toml``: ``$BIOPLAUSIBLE_MODELS`` (``:``-separated), then models/."""
    dirs = [Path(p) for p in os.environ.get("BIOPLAUSIBLE_MODELS", "").split(os.pathsep) if p]
    return dirs + [_REPO_MODELS]


def list_recipes() -> dict[str, str]:
    """Name -> one-line description of every recipe found."""
    out = {}
    for d in recipe_dirs():
        for f in sorted(d.glob("*.toml")):
            if f.stem not in out:
                try:
                    out[f.stem] = tomllib.loads(f.read_text()).get("description", "")
                except tomllib.TOMLDecodeError as e:
                    out[f.stem] = f"(unreadable: {e})"
    return out


def load_recipe(name_or_path) -> tuple[dict, str]:
    """Return ``(recipe dict, recipe text)`` for a recipe name, a ``.toml`` path or a dict."""
    if isinstance(name_or_path, dict):
        return name_or_path, repr(name_or_path)
    p = Path(str(name_or_path))
    if p.suffix != ".toml":
        for d in recipe_dirs():
            if (d / f"{p.name}.toml").is_file():
                p = d / f"{p.name}.toml"
                break
        else:
            raise UserError(f"unknown model recipe {str(name_or_path)!r}; available: "
                            f"{', '.join(sorted(list_recipes()))} (or a path to a .toml file)")
    if not p.is_file():
        raise UserError(f"model recipe file {str(p)!r} does not exist")
    text = p.read_text()
    try:
        recipe = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"model recipe {str(p)!r} is not valid TOML: {e}") from None
    recipe.setdefault("name", p.stem)
    return recipe, text


class Block:
    """A sequence of layers trained as one unit of locality."""

    def __init__(self, layers: list, in_shape: tuple):
        self.layers = list(layers)
        self.in_shape = tuple(in_shape)
        shape = self.in_shape
        for layer in self.layers:
            shape = tuple(layer.output_shape(shape))
        self.out_shape = shape

    @property
    def params(self) -> list[dict]:
        """One dict per layer (the layers' own arrays: optimisers update them in place)."""
        return [layer.params for layer in self.layers]

    def _fused(self) -> bool:
        """Whether this block is a first block ``conv -> [ReLU +] max-pool`` that runs through
        :mod:`bioplausible.layers.fused` (same results and caches, the pre-pool activity kept in
        cache-sized blocks instead of memory).  Checked on every call: layers may be replaced."""
        from .layers import fused

        return fused.fusable(self.layers)

    def forward(self, x):
        if self._fused():
            from .layers import fused

            return fused.forward(self.layers[0], self.layers[1], x)
        caches = []
        for layer in self.layers:
            x, c = layer.forward(x)
            caches.append(c)
        return x, caches

    def backward(self, caches, dy, need_dx: bool = True):
        """Chain the layers backwards.  Returns ``(dx or None, [grads per layer])``."""
        if not need_dx and self._fused() and getattr(caches[0], "has_x", False):
            from .layers import fused

            return None, fused.weight_grads(self.layers[0], self.layers[1], caches, dy)
        grads = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            need = need_dx or i > 0
            dy, grads[i] = self.layers[i].backward(caches[i], dy, need)
        return (dy if need_dx else None), grads

    def __call__(self, x):
        return self.forward(x)[0]

    @staticmethod
    def code(h: np.ndarray) -> np.ndarray:
        """The block's code: global average pool of an NHWC map, or the vector itself."""
        return h.mean(axis=(1, 2)) if h.ndim == 4 else h

    @staticmethod
    def code_backward(h_shape: tuple, dz: np.ndarray) -> np.ndarray:
        """Gradient of ``code`` with respect to the block output."""
        if len(h_shape) == 4:
            n, hh, ww, c = h_shape
            return np.broadcast_to((dz / (hh * ww))[:, None, None, :], h_shape).astype(dz.dtype)
        return dz

    def __repr__(self):
        return f"Block({' -> '.join(type(l).__name__ for l in self.layers)}; out {self.out_shape})"


class Encoder:
    """A list of blocks built from a recipe; ``forward`` returns every block's output."""

    def __init__(self, blocks: list[Block], recipe: dict, recipe_text: str, in_shape: tuple,
                 seed):
        self.blocks = blocks
        self.recipe = recipe
        self.recipe_text = recipe_text
        self.in_shape = tuple(in_shape)
        self.seed = seed

    @property
    def name(self) -> str:
        return self.recipe.get("name", "encoder")

    @property
    def params(self) -> list[dict]:
        return [p for b in self.blocks for p in b.params]

    @property
    def out_shapes(self) -> list[tuple]:
        return [b.out_shape for b in self.blocks]

    @property
    def code_dims(self) -> list[int]:
        return [s[-1] for s in self.out_shapes]

    def check_input(self, x):
        if x.ndim != len(self.in_shape) + 1 or tuple(x.shape[1:]) != self.in_shape:
            raise UserError(f"encoder {self.name!r} was built for inputs of shape "
                            f"(batch, {', '.join(map(str, self.in_shape))}), got {x.shape}")

    def forward(self, x, upto: int | None = None):
        """Return ``(outputs, caches)``: one entry per block up to ``upto`` (exclusive)."""
        self.check_input(x)
        outs, caches = [], []
        for b in self.blocks[:upto]:
            x, c = b.forward(x)
            outs.append(x)
            caches.append(c)
        return outs, caches

    def outputs(self, x, upto: int | None = None) -> list[np.ndarray]:
        """Block outputs without caches (inference)."""
        self.check_input(x)
        outs = []
        for b in self.blocks[:upto]:
            x = b(x)
            outs.append(x)
        return outs

    def codes(self, x) -> list[np.ndarray]:
        return [Block.code(h) for h in self.outputs(x)]

    def n_params(self) -> int:
        return int(sum(a.size for p in self.params for a in p.values()))

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"block{bi}/layer{li}/{k}": v.copy()
                for bi, b in enumerate(self.blocks)
                for li, p in enumerate(b.params) for k, v in p.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]):
        """Copy arrays into the existing parameters (in place: optimisers keep their references)."""
        own = {f"block{bi}/layer{li}/{k}": v
               for bi, b in enumerate(self.blocks)
               for li, p in enumerate(b.params) for k, v in p.items()}
        missing = sorted(set(own) - set(state))
        if missing:
            raise UserError(f"checkpoint does not match encoder {self.name!r}: missing {missing[:3]}")
        for k, v in own.items():
            if v.shape != state[k].shape:
                raise UserError(f"checkpoint does not match encoder {self.name!r}: {k} has shape "
                                f"{state[k].shape}, the encoder has {v.shape}")
            v[...] = state[k]

    def copy(self) -> "Encoder":
        """An independent encoder with the same weights (rebuilt from the recipe)."""
        other = build(self.recipe, self.in_shape, seed=0)
        other.recipe_text, other.seed = self.recipe_text, self.seed
        other.load_state_dict(self.state_dict())
        return other

    def __repr__(self):
        lines = [f"Encoder {self.name!r} on input {self.in_shape}, {self.n_params():,} parameters"]
        lines += [f"  {i}: {b!r}" for i, b in enumerate(self.blocks)]
        return "\n".join(lines)


def make_layer(spec: dict, in_shape: tuple, rng: np.random.Generator, where: str = "layer"):
    """Build one layer from its recipe entry, taking input sizes from ``in_shape``."""
    from .layers import LAYERS

    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in LAYERS:
        raise UserError(f"{where}: unknown layer type {kind!r}; allowed: {', '.join(sorted(LAYERS))}")
    cls = LAYERS[kind]
    args = {}
    if kind == "conv2d":
        if len(in_shape) != 3:
            raise UserError(f"{where}: conv2d needs image input (H, W, C), got shape {in_shape}")
        args["c_in"], args["c_out"] = in_shape[-1], spec.pop("out", None)
    elif kind == "dense":
        if len(in_shape) != 1:
            raise UserError(f"{where}: dense needs a flat input; put a flatten layer before it "
                            f"(input shape {in_shape})")
        args["n_in"], args["n_out"] = in_shape[0], spec.pop("out", None)
    if None in args.values():
        raise UserError(f"{where}: {kind} needs 'out' (number of output units/channels)")
    sig = inspect.signature(cls)
    allowed = [n for n in sig.parameters if n not in ("rng", "c_in", "c_out", "n_in", "n_out")]
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise UserError(f"{where}: {kind} has no option {unknown[0]!r}; allowed: "
                        f"{', '.join(allowed + (['out'] if kind in ('conv2d', 'dense') else []))}")
    args.update(spec)
    if "rng" in sig.parameters:
        args["rng"] = rng
    return cls(**args)


def build(recipe, in_shape: tuple, seed: int = 0) -> Encoder:
    """Build an encoder from a recipe name, path or dict for inputs of ``in_shape`` (no batch axis).

    Initial weights are drawn from ``numpy.random.default_rng(seed)`` in layer order, so the same
    recipe and seed give the same weights for every rule.
    """
    recipe, text = load_recipe(recipe)
    blocks_spec = recipe.get("block")
    if not blocks_spec:
        raise UserError(f"recipe {recipe.get('name')!r} has no [[block]] entries")
    unknown = sorted(set(recipe) - {"name", "description", "block"})
    if unknown:
        raise UserError(f"recipe {recipe.get('name')!r}: unknown key {unknown[0]!r}; "
                        "allowed: name, description, block")
    rng = np.random.default_rng(seed)
    blocks, shape = [], tuple(in_shape)
    for bi, bspec in enumerate(blocks_spec):
        layers = []
        block_in = shape
        for li, lspec in enumerate(bspec.get("layers", [])):
            layer = make_layer(lspec, shape, rng, where=f"recipe {recipe.get('name')!r} block {bi} layer {li}")
            shape = tuple(layer.output_shape(shape))
            layers.append(layer)
        if not layers:
            raise UserError(f"recipe {recipe.get('name')!r}: block {bi} has no layers")
        blocks.append(Block(layers, block_in))
    return Encoder(blocks, recipe, text, in_shape, seed)
