from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def shared_datasets():
    path = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
    if not path.is_dir():
        pytest.skip(f"real data not available at {path}")
    return path
