"""Which side of its key can doctune-tiny's language model read? Two zero-shot probes on held-out
pages, through the oracle's visual tokens (the page's characters laid into them exactly, what a
perfect reader would give) and, with ``--connector``, through the connector's:

- purchase orders (a pre-training kind, every line-item quantity asked): quantities on tables that
  put the quantity left of the item's name, against those that put it right of it;
- generic pages whose tables put the row name in any column (``--key-anywhere 1.0``): answers left
  of the name, against answers right of it;
- rows of purchase orders, either way: "What precedes "<words>"?" (``--precede``'s questions,
  answered by the row's start) against "What follows "<first words>"?" (the rest of the row).

    PYTHONPATH=src python scripts/probe_key_side.py --model src/doctune/assets/doctune-tiny \\
        [--pages 60] [--connector]

Prints one JSON line per probe, side (where the answer lies from its key) and kind of visual
tokens: ANLS, exact match, the number of questions and a few answers.
"""

from __future__ import annotations

import argparse
import json
import random
import re

import torch

import pretrain_tiny
import reading_pages
import row_questions
from doctune.synth.questions import templates_for
from tiny_eval import generate_answers, oracle_tokens_for, score

QUANTITY_QUESTIONS = templates_for("purchase_order", "item_0_quantity")


def parse(question: str, templates) -> dict | None:
    """The fields of the first of ``templates`` (``str.format`` wordings) that ``question`` fills
    in, by name; None if it fills in none of them."""
    for template in templates:
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>.+?)", re.escape(template))
        if m := re.fullmatch(pattern, question):
            return m.groupdict()
    return None


def generic_side(page, question: str, answer: str) -> str | None:
    """Where a generic table question's answer lies from its row's name ("left" or "right"), found
    on the name's row; None for any other question."""
    fields = parse(question, reading_pages.TABLE_QUESTIONS)
    if not fields or fields["head"] not in reading_pages.COLUMNS:
        return None
    keys = [line["box"] for line in page.lines if line["text"] == fields["name"]]
    for cell in (line["box"] for line in page.lines if line["text"] == answer):
        for key in keys:
            if abs(cell[1] - key[1]) < 1:
                return "left" if cell[0] < key[0] else "right"
    raise ValueError(f"{question!r}: the answer {answer!r} is not on the row of its name")


def quantity_side(page, question: str, answer: str) -> str | None:
    """Where a line item's quantity lies from the item's name on a synth page ("left" or "right");
    None for other questions and for names printed on more than one line."""
    fields = parse(question, QUANTITY_QUESTIONS)
    if not fields:
        return None
    rows = [line["text"] for line in page.lines if fields["ctx"] in line["text"]]
    if len(rows) != 1:
        return None
    if rows[0].startswith(answer + " "):
        return "left"
    return "right" if rows[0].startswith(fields["ctx"]) else None


def row_side(page, question: str, answer: str) -> str | None:
    """"left" for a "What precedes ...?" question, "right" for a "What follows ...?" one."""
    if question.startswith(row_questions.PRECEDES):
        return "left"
    return "right" if question.startswith(row_questions.FOLLOWS) else None


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
    orders = [reading_pages.synth_page("purchase_order", 7_000_000 + s, random.Random(s), all_rows=True)
              for s in range(args.pages)]
    probes = {
        "purchase_order quantities": questions(orders, quantity_side),
        "generic tables, names anywhere": questions(
            [reading_pages.render_generic(8_000_000 + s, key_anywhere=1.0) for s in range(args.pages)],
            generic_side),
    }
    # The questions --precede trains on, against the follow questions every stage trained on.
    for i, page in enumerate(orders):
        row_questions.add_precede_questions(page, random.Random(9_000_000 + i), 3)
    probes["rows, either way"] = questions(orders, row_side)
    for probe, items in probes.items():
        pairs = [(page.image, q) for page, q, _, _ in items]
        answers = {"oracle": generate_answers(model, processor, pairs, visual_tokens=[oracle(p) for p, *_ in items])}
        if args.connector:
            answers["connector"] = generate_answers(model, processor, pairs)
        for side in ("left", "right"):
            idx = [i for i, item in enumerate(items) if item[3] == side]
            for via, got in answers.items():
                print(json.dumps({"probe": probe, "side": side, "tokens": via,
                                  **score([got[i] for i in idx], [items[i][2] for i in idx]),
                                  "examples": [[items[i][1], items[i][2], got[i]] for i in idx[:4]]}))

if __name__ == "__main__":
    main()
