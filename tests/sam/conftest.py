import numpy as np
import pytest
import torch

import sam


@pytest.fixture(scope="session")
def tiny_model() -> sam.Sam:
    """The tiny registry config with non-trivial random weights (fixed seed)."""
    torch.manual_seed(0)
    model = sam.build_model("tiny")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.add_(torch.randn_like(param) * 0.02)
    return model


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
