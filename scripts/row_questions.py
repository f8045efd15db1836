"""Questions drawn from a page's text rather than its layout: transcribe a line, read on from the
start of a row ("What follows"), read a row's start before a key ("What precedes"), and the
text-only lookups in random strings that teach the copy every one of them needs. Their wordings
(``TRANSCRIBE``, ``FOLLOWS``, ``READ_ON``, ``PRECEDES``) are how the trainers and the evaluation
pick the forms out."""

from __future__ import annotations

import random


TRANSCRIBE = "Transcribe the line that starts with"


def transcribe_question(line: str, texts: list):
    """("Transcribe the line that starts with "<first words>".", line), with as many first words as
    tell ``line`` apart from every other of the page's ``texts``; None if nothing does (the line
    begins another one). A bank statement has several lines that start with "Account"."""
    words = line.split(" ")
    for k in range(1, len(words) + 1):
        start = " ".join(words[:k])
        if sum(t.startswith(start) for t in texts) <= 1:
            return f"{TRANSCRIBE} \"{start}\".", line
    return None


def visual_rows(lines: list) -> list:
    """The page's text rows, left to right: lines (``{"text", "box"}``) whose vertical centres lie
    within half a line height of each other are one row (a label and its value, a table row)."""
    rows = []
    for line in sorted(lines, key=lambda l: (l["box"][1] + l["box"][3]) / 2):
        x0, y0, x1, y1 = line["box"]
        cy, h = (y0 + y1) / 2, max(y1 - y0, 1.0)
        if rows and abs(rows[-1]["cy"] - cy) < 0.5 * h:
            rows[-1]["parts"].append((x0, line["text"]))
        else:
            rows.append({"cy": cy, "parts": [(x0, line["text"])]})
    return [" ".join(t for _, t in sorted(r["parts"])) for r in rows]


# How follow_questions words its questions; the trainers and evaluation pick them out by these.
FOLLOWS = "What follows"
READ_ON = "Read on from"


def row_splits(rows: list, rng: random.Random):
    """``(row, word)`` pairs: each row of two words or more (``rows``: lists of words) in random
    order, with a random word of it other than its first, where a question splits it."""
    order = [i for i, r in enumerate(rows) if len(r) >= 2]
    rng.shuffle(order)
    for i in order:
        yield i, rng.randint(1, len(rows[i]) - 1)


def follow_questions(lines: list, rng: random.Random, n: int = 3, max_len: int = 32,
                     across_rows: bool = False) -> list:
    """Up to ``n`` questions "What follows "<first words of a row>"?" answered by the rest of the
    row: the label-to-value reading of every key/value pair and table row, on any document.

    ``across_rows``: "Read on from "<first words of a row>"." answered by the rest of the row and
    the rows after it, one per line, up to ``max_len`` characters: a long transcription that gives
    the language model a target character for every step of its walk over the page."""
    all_rows = [r.split() for r in visual_rows(lines)]
    out = []
    for i, k in row_splits(all_rows, rng):
        words = all_rows[i]
        prefix = " ".join(words[:k])
        rest = [words[k:]] + (all_rows[i + 1 :] if across_rows else [])
        answer = ""
        for r, row in enumerate(rest):
            for j, w in enumerate(row):
                sep = "" if not answer else ("\n" if j == 0 and r > 0 else " ")
                if len(answer) + len(sep) + len(w) > max_len:
                    break
                answer += sep + w
            else:
                continue
            break
        # The prefix must point at one row only.
        if not answer or sum(" ".join(r).startswith(prefix) for r in all_rows if len(r) >= 2) > 1:
            continue
        out.append((f"{READ_ON} \"{prefix}\"." if across_rows else f"{FOLLOWS} \"{prefix}\"?", answer))
        if len(out) == n:
            break
    return out


PRECEDES = "What precedes"


def precede_questions(lines: list, rng: random.Random, n: int = 1, max_len: int = 32) -> list:
    """Up to ``n`` questions "What precedes "<words of a row>"?" answered by the words before them
    on their row: the mirror of ``follow_questions``.

    A table may put the asked-for cell left of the row's name (a quantity column before the item).
    The model learns to find a key and copy what follows it; this asks it to find a key and read
    the row from its start instead. The key is the fewest words, from a random word of the row
    onwards, that occur once on the page; rows whose start before the key is over ``max_len``
    characters are passed over."""
    rows = [r.split() for r in visual_rows(lines)]
    page = "\n".join(" ".join(r) for r in rows)
    out = []
    for i, k in row_splits(rows, rng):
        words = rows[i]
        answer = " ".join(words[:k])
        if len(answer) > max_len:
            continue
        key = next((" ".join(words[k:e]) for e in range(k + 1, len(words) + 1)
                    if page.count(" ".join(words[k:e])) == 1), None)
        if key is None:
            continue
        out.append((f"{PRECEDES} \"{key}\"?", answer))
        if len(out) == n:
            break
    return out


def add_precede_questions(page, rng: random.Random, n: int) -> None:
    """Append ``n`` of ``precede_questions`` to ``page``'s questions, from its boxed lines."""
    boxed = [line for line in page.lines if isinstance(line, dict)]
    page.qa.extend(precede_questions(boxed, rng, n))


LOOKUP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789.,:-/$"


def lookup_sample(rng: random.Random, length: int, key: int = 3, answer: int = 6, back: float = 0.0) -> tuple:
    """(context, question, answer) about a random string of ``length`` characters: "What follows
    "<key>"?", answered by the ``answer`` characters after the one place ``<key>`` occurs, or, half
    of the time, "Transcribe from "<key>".", answered by ``<key>`` and those characters.

    Finding a string in the context and reading on from it is the step every reading question
    needs. In the second form every answer character after the key follows a character the model
    has just written, the easiest copy to learn; the first form then has to find the key itself. A
    small language model learns this on short contexts and carries it to long ones, while on
    page-long contexts it does not start to (``--lookup-schedule`` grows the length).

    ``back``: the share of samples asked the other way, "What precedes "<key>"?", answered by the
    ``answer`` characters before the key: a causal model must have gathered them into the key's
    positions before it is asked (``--lookup-back``)."""
    backwards = back > 0 and rng.random() < back
    while True:
        text = "".join(rng.choice(LOOKUP_ALPHABET) for _ in range(length))
        if backwards:
            at = rng.randrange(answer, length - key + 1)
        else:
            at = rng.randrange(0, length - key - answer + 1)
        k = text[at : at + key]
        if text.count(k) != 1:
            continue
        if backwards:
            return text, f"{PRECEDES} \"{k}\"?", text[at - answer : at]
        rest = text[at + key : at + key + answer]
        if rng.random() < 0.5:
            return text, f"Transcribe from \"{k}\".", k + rest
        return text, f"{FOLLOWS} \"{k}\"?", rest
