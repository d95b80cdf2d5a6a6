"""Test settings: offline always, the course data from ../shared/data when it is there."""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests never touch the network.
os.environ["LLM_COURSE_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
_shared = ROOT.parent / "shared" / "data"
if not os.environ.get("LLM_COURSE_DATA") and (_shared / "README.md").exists():
    os.environ["LLM_COURSE_DATA"] = str(_shared)

import torch  # noqa: E402  (after the environment is set)

# Tests use tiny models, for which one thread is fastest (no thread start-up per operation).
torch.set_num_threads(1)


@pytest.fixture
def data_dir() -> Path:
    """The course data folder; tests that need real files skip with a reason when it is absent."""
    from reference_impl.download import cache_dir

    path = cache_dir()
    if not (path / "the-verdict.txt").exists():
        pytest.skip(f"course data not found in {path}: set LLM_COURSE_DATA to a folder holding it")
    return path


@pytest.fixture
def verdict_text(data_dir) -> str:
    from reference_impl.download import read_text

    return read_text("the-verdict.txt")


# Grading runs each kernel in a bubblewrap sandbox: the tests that grade need it. Without
# `bwrap` they skip, saying how to get it, except where LLM_COURSE_REQUIRE_SANDBOX is set (CI),
# where they run and fail.
requires_sandbox = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("LLM_COURSE_REQUIRE_SANDBOX"),
    reason="the grading sandbox needs bubblewrap (bwrap): sudo apt install bubblewrap",
)


# Notebooks inside tests/ are fixtures (e.g. submissions to grade), not notebooks to run.
collect_ignore_glob = ["**/*.ipynb"]


# --- the tiny model of the unit tests ---------------------------------------------------------
# One definition for every test module: `tiny_model(seed=123, **config changes)` builds a seeded
# GPTModel in eval mode (the same seed gives the same weights). A module that needs other sizes
# overrides the `tiny_config` fixture.


@pytest.fixture
def tiny_config():
    from reference_impl.model import GPTConfig

    return GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0)


@pytest.fixture
def tiny_model(tiny_config):
    from reference_impl.model import GPTModel

    def make(seed: int = 123, **changes):
        torch.manual_seed(seed)
        return GPTModel(tiny_config.replace(**changes)).eval()

    return make
