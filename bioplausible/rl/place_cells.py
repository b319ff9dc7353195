r"""Gaussian place cells: the input layer of the navigating agents.

Cell i fires f_i(p) = exp(−|p − c_i|² / (2σ²)) at position p (peak rate 1, tuning width σ), as
in Foster, Morris & Dayan (2000) and the course miniproject (20 × 20 cells over the unit square,
σ = 0.05).
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError


class PlaceCells:
    """A population of Gaussian place cells with centres ``centres`` (n, 2) and width ``sigma``."""

    def __init__(self, centres, sigma: float):
        centres = np.ascontiguousarray(centres, dtype=np.float64)
        if centres.ndim != 2 or centres.shape[1] != 2 or len(centres) == 0:
            raise UserError(f"place-cell centres must be an (n, 2) array with n ≥ 1; got shape "
                            f"{centres.shape}")
        if not (np.isfinite(sigma) and sigma > 0):
            raise UserError(f"place-cell width sigma must be a positive number; got {sigma}")
        self.centres = centres
        self.sigma = float(sigma)

    def __len__(self):
        return len(self.centres)

    def __repr__(self):
        return f"PlaceCells(n={len(self)}, sigma={self.sigma})"

    def activity(self, p) -> np.ndarray:
        """Rates at positions ``p`` (..., 2) -> (..., n)."""
        p = np.asarray(p, dtype=np.float64)
        d2 = ((p[..., None, :] - self.centres) ** 2).sum(-1)
        return np.exp(-d2 / (2.0 * self.sigma ** 2))


def grid(n: int = 20, sigma: float = 0.05, bounds=(0.0, 0.0, 1.0, 1.0)) -> PlaceCells:
    """``n × n`` cells on a regular grid spanning ``bounds`` = (xmin, ymin, xmax, ymax), edges
    included (the course layout: n = 20, σ = 0.05 over the unit square)."""
    if int(n) < 1:
        raise UserError(f"place-cell grid needs n ≥ 1 cells per side; got {n}")
    x0, y0, x1, y1 = map(float, bounds)
    xs = np.linspace(x0, x1, int(n))
    ys = np.linspace(y0, y1, int(n))
    cx, cy = np.meshgrid(xs, ys, indexing="xy")
    return PlaceCells(np.stack([cx.ravel(), cy.ravel()], 1), sigma)


def disc(n: int = 493, radius: float = 1.0, sigma: float = 0.16, centre=(0.0, 0.0)) -> PlaceCells:
    """``n`` cells spread evenly over a disc (sunflower / Vogel spiral: deterministic, uniform
    density), as the 493 cells of width 0.16 m over the 2 m pool of Foster et al. (2000)."""
    if int(n) < 1:
        raise UserError(f"place-cell disc needs n ≥ 1 cells; got {n}")
    k = np.arange(int(n)) + 0.5
    r = radius * np.sqrt(k / int(n))
    th = np.pi * (3.0 - np.sqrt(5.0)) * k
    c = np.stack([centre[0] + r * np.cos(th), centre[1] + r * np.sin(th)], 1)
    return PlaceCells(c, sigma)
