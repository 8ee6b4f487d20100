import os
from pathlib import Path

import pytest

import attribench.plugins  # noqa: F401  every registry filled, as in a run
from openai_standin import openai_standin  # noqa: F401  the local OpenAI stand-in server, a fixture

# Nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture()
def smoke_cfg():
    from attribench.core import config

    return config.load(REPO / "params.yaml", {"profile": "smoke"})


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: intra-op threading only adds sync overhead, and on a busy 2-core box spinning
    OpenMP workers make a run several times slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
