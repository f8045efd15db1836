"""The files of a pre-training stage: its log, its checkpoint, and what lives beside the checkpoint.

A stage's auxiliary heads and data seeds are saved beside its checkpoint, never in it, so the
checkpoint stays a plain Idefics2 folder that ``from_pretrained`` loads."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

HEADS = "-heads.pt"  # the auxiliary heads (and the oracle's tables), reloaded by a stage that continues
SEEDS = "-seeds.json"  # the --seed of the stage and of every stage it continues


def beside(checkpoint: Path, suffix: str) -> Path:
    """The file ``suffix`` names for ``checkpoint``: ``<checkpoint><suffix>`` in the same folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / (checkpoint.name + suffix)


def json_logger(path: Path, mode: str):
    """A function that prints a record as one JSON line and appends it to ``path`` at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(path, mode)

    def log(rec: dict) -> None:
        line = json.dumps(rec)
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    return log


def save_atomic(model, processor, output: Path, heads=None) -> None:
    """Write the plain checkpoint through a temporary folder (a kill never leaves half of one), and
    the auxiliary ``heads`` beside it."""
    output = Path(output)
    tmp = beside(output, ".tmp")
    old = beside(output, ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        output.rename(old)
    tmp.rename(output)
    shutil.rmtree(old, ignore_errors=True)
    if heads is not None:
        torch.save(heads.state_dict(), beside(output, HEADS))


def data_seeds(args, log) -> list:
    """The ``--seed`` of every stage this one continues (``<init>-seeds.json``), then its own.

    A step draws its pages and questions from ``--seed`` and the step number, so a stage that
    reuses an earlier stage's seed trains on that stage's pages again: logged as a warning."""
    before = []
    if args.init_from and beside(args.init_from, SEEDS).exists():
        before = json.loads(beside(args.init_from, SEEDS).read_text())
    if args.seed in before:
        msg = (f"--seed {args.seed} was used by an earlier stage of {args.init_from}: this stage draws "
               f"that stage's pages again. Pass a --seed not in {sorted(set(before))} for fresh pages.")
        log({"warning": msg})
        print(f"warning: {msg}", file=sys.stderr, flush=True)
    return before + [args.seed]
