"""A whole pre-training stage run through ``scripts/pretrain_tiny.py``'s entry point."""

import json
import sys
from pathlib import Path

import pytest

from doctune.models import TINY_MODEL_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import pretrain_tiny  # noqa: E402


def test_a_compiled_stage_trains_as_the_eager_one_and_saves_plain_weights(tmp_path, compile_counters):
    from safetensors import safe_open

    # A language-model stage as stage 68b's (vision frozen), two steps of one small page each.
    stage = ["--init-from", str(TINY_MODEL_DIR), "--oracle-lm", "0.3", "--batch-size", "1", "--turns", "2",
             "--crops-per-page", "0", "--patch-weight", "0", "--latent-weight", "0", "--pos-weight", "0",
             "--oracle-weight", "1", "--lm-start", "0", "--freeze-vision", "--max-steps", "2", "--log-every", "1",
             "--eval-pages", "1", "--kinds", "receipt", "--seed", "3", "--threads", "1"]
    logs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        logs[name] = tmp_path / f"{name}.log"
        pretrain_tiny.main([*stage, *extra, "--output", str(tmp_path / name), "--log", str(logs[name])])
    assert compile_counters["stats"]["unique_graphs"] > 0  # the language model ran through compiled graphs

    def losses(log):
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        return [(row["lm"], row["oracle"]) for row in rows if "lm" in row and "final_eval" not in row]

    eager, compiled = losses(logs["eager"]), losses(logs["compiled"])
    assert len(eager) == len(compiled) == 2
    assert compiled == [pytest.approx(pair, rel=2e-3) for pair in eager]  # kernels sum in other orders
    with safe_open(TINY_MODEL_DIR / "model.safetensors", "pt") as start, \
            safe_open(tmp_path / "compiled" / "model.safetensors", "pt") as end:
        assert set(end.keys()) == set(start.keys())  # no torch.compile wrapper names in the checkpoint
