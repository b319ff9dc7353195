import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, seeded Generator: tests never touch the global RNG."""
    return np.random.default_rng(12345)


def torch_or_skip():
    """Import torch for reference checks, or skip the test (torch is an optional extra)."""
    return pytest.importorskip("torch")


def have_dataset(name):
    """True when the dataset's test split is on this machine (no download attempted)."""
    from bioplausible import datasets
    try:
        datasets.load(name, "test", download=False)
        return True
    except Exception:
        return False
