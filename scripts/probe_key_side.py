"""Which side of its key can doctune-tiny's language model read? Two zero-shot probes on held-out
pages, through the oracle's visual tokens (the page's characters laid into them exactly, what a
perfect reader would give) and, with ``--connector``, through the connector's:

- purchase orders (a pre-training kind, every line-item quantity asked): quantities on tables that
  put the quantity left of the item's name, against those that put it right of it;
- generic pages whose tables put the row name in any column (``--key-anywhere 1.0``): answers left
  of the name, against answers right of it.

    PYTHONPATH=src python scripts/probe_key_side.py --model src/doctune/assets/doctune-tiny \\
        [--pages 60] [--connector]

Prints one JSON line per probe, side (where the answer lies from its key) and kind of visual tokens: questions, exact matches, ANLS and
a few answers.
"""

from __future__ import annotations

import argparse
import json
import random
import re

import torch

import pretrain_tiny
import reading_pages
from doctune.metrics import anls
from tiny_eval import generate_answers, oracle_tokens_for

TABLE_QUESTION = re.compile(r"What is the (.+) for (.+)\?|(.+) of (.+)\?")
QUANTITY_QUESTION = re.compile(r"(?:What is the quantity of|How many units of) (.+?)(?: are listed)?\?")


def generic_side(page, question: str, answer: str) -> str | None:
    """Where a generic table question's answer lies from its row's name ("left" or "right"), found
    on the name's row; None for any other question."""
    m = TABLE_QUESTION.fullmatch(question)
    if not m or (m[1] or m[3]) not in reading_pages.COLUMNS:
        return None
    name = m[2] or m[4]
    for key in page.lines:
        for cell in page.lines:
            if key["text"] == name and cell["text"] == answer and abs(cell["box"][1] - key["box"][1]) < 1:
                return "left" if cell["box"][0] < key["box"][0] else "right"
    raise ValueError(f"{question!r}: the answer {answer!r} is not on the row of its name")


def quantity_side(page, question: str, answer: str) -> str | None:
    """Where a line item's quantity lies from the item's name on a synth page ("left" or "right");
    None for other questions and for names printed on more than one line."""
    m = QUANTITY_QUESTION.fullmatch(question)
    if not m:
        return None
    rows = [line["text"] for line in page.lines if m[1] in line["text"]]
    if len(rows) != 1:
        return None
    if rows[0].startswith(answer + " "):
        return "left"
    return "right" if rows[0].startswith(m[1]) else None


def questions(pages: list, side_of) -> list:
    """(page, question, answer, side) of every question ``side_of`` places."""
    return [(page, q, a, side) for page in pages for q, a in page.qa if (side := side_of(page, q, a))]


def main(argv: list | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a doctune-tiny checkpoint with its -heads.pt beside it")
    ap.add_argument("--pages", type=int, default=60, help="held-out pages per probe")
    ap.add_argument("--connector", action="store_true", help="also answer through the connector's tokens")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    targs = pretrain_tiny.parse_args(["--init-from", args.model, "--output", "unused", "--crops-per-page", "0"])
    model, processor = pretrain_tiny.load_model(targs)
    heads = pretrain_tiny.build_heads(model, processor, targs, lambda *_: None)
    oracle = oracle_tokens_for(pretrain_tiny.Batcher(processor, targs), heads["oracle"])
    # Seeds far from the pre-training draws and from tiny_eval's held-out pages.
    probes = {
        "purchase_order quantities": questions(
            [reading_pages.synth_page("purchase_order", 7_000_000 + s, random.Random(s), all_rows=True)
             for s in range(args.pages)], quantity_side),
        "generic tables, names anywhere": questions(
            [reading_pages.render_generic(8_000_000 + s, key_anywhere=1.0) for s in range(args.pages)],
            generic_side),
    }
    for probe, items in probes.items():
        pairs = [(page.image, q) for page, q, _, _ in items]
        answers = {"oracle": generate_answers(model, processor, pairs, visual_tokens=[oracle(p) for p, *_ in items])}
        if args.connector:
            answers["connector"] = generate_answers(model, processor, pairs)
        for side in ("left", "right"):
            idx = [i for i, item in enumerate(items) if item[3] == side]
            for via, got in answers.items():
                print(json.dumps({
                    "probe": probe, "side": side, "tokens": via, "n": len(idx),
                    "exact": sum(got[i].strip() == items[i][2] for i in idx),
                    "anls": round(sum(anls(got[i], [items[i][2]]) for i in idx) / max(1, len(idx)), 4),
                    "examples": [[items[i][1], items[i][2], got[i]] for i in idx[:4]]}))


if __name__ == "__main__":
    main()
