import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, seeded Generator: tests never touch the global RNG."""
    return np.random.default_rng(12345)


def torch_or_skip():
    """Import torch for reference checks, or skip the test (torch is an optional extra)."""
    return pytest.importorskip("torch")
