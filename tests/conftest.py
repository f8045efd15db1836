"""Shared test setup: everything runs offline, on the CPU, on data the tests make themselves."""

import os
import shutil
import sys
from pathlib import Path

# Set before transformers/datasets/huggingface_hub import: they read these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))  # the fixtures helper module

import pytest  # noqa: E402
from fixtures import make_docvqa_parquet_folder  # noqa: E402


@pytest.fixture(scope="session")
def docvqa_folder(tmp_path_factory) -> Path:
    """A parquet folder in the exact nielsr/docvqa_1200_examples layout: 8 train, 4 test records."""
    return make_docvqa_parquet_folder(tmp_path_factory.mktemp("docvqa"), splits={"train": 8, "test": 4})


@pytest.fixture
def compile_counters(tmp_path, monkeypatch):
    """torch.compile's counters, cleared, for a test that compiles. Inductor's kernels (about 160 MB)
    go into the test's folder rather than pile up in the system's temp; skipped without a C++
    compiler, which torch.compile on a CPU needs."""
    if not any(shutil.which(c) for c in ("g++", "clang++", "c++")):
        pytest.skip("torch.compile on a CPU needs a C++ compiler")
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    counters.clear()
    return counters
