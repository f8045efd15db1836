"""Answer-quality metrics for document question answering.

Implements the ANLS (Average Normalized Levenshtein Similarity) metric with
the semantics of the official DocVQA evaluation, plus exact match, and a
scorer for JSONL prediction files so predictions from any system can be
compared on the same footing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import Levenshtein

from doctune.errors import DoctuneError
from doctune.files import read_jsonl, write_jsonl_atomic

DEFAULT_THRESHOLD = 0.5


class ScoreInputError(DoctuneError, ValueError):
    """A predictions file that cannot be scored; the message names the file and line."""


def normalize_answer(text: str) -> str:
    """Normalize an answer the way the DocVQA evaluation does.

    Args:
        text: Raw answer text.

    Returns:
        The text stripped, lowercased, with every run of whitespace collapsed
        to a single space.
    """
    return " ".join(text.lower().split())


def _check_answers(answers: Sequence[str]) -> None:
    """Reject answer collections that would silently give wrong scores.

    Args:
        answers: Gold answers passed to a metric.

    Raises:
        TypeError: If ``answers`` is a single string, which would otherwise be
            iterated character by character.
        ValueError: If ``answers`` is empty.
    """
    if isinstance(answers, str):
        raise TypeError("answers must be a sequence of strings, not a single string")
    if len(answers) == 0:
        raise ValueError("answers must contain at least one gold answer; got an empty sequence")


def _normalized_distance(prediction: str, answer: str) -> float:
    """Return the Levenshtein distance divided by the longer string's length.

    Args:
        prediction: Normalized predicted answer.
        answer: Normalized gold answer.

    Returns:
        A value in [0, 1]; 0 when both strings are empty.
    """
    longest = max(len(prediction), len(answer))
    if longest == 0:
        return 0.0
    return Levenshtein.distance(prediction, answer) / longest


def anls(prediction: str, answers: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> float:
    """Score one prediction with ANLS against its gold answers.

    Args:
        prediction: Predicted answer text.
        answers: One or more acceptable gold answers.
        threshold: Normalized distances at or above this score 0, as in the
            official metric (0.5).

    Returns:
        The best similarity over the gold answers, in [0, 1].

    Raises:
        TypeError: If ``answers`` is a single string.
        ValueError: If ``answers`` is empty or ``threshold`` is not in (0, 1].
    """
    _check_answers(answers)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    pred = normalize_answer(prediction)
    best = 0.0
    for answer in answers:
        distance = _normalized_distance(pred, normalize_answer(answer))
        # Strictly below the threshold counts; NL == threshold scores 0.
        score = 1.0 - distance if distance < threshold else 0.0
        best = max(best, score)
    return best


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """Score one prediction 1.0 if it equals any gold answer after normalization.

    Args:
        prediction: Predicted answer text.
        answers: One or more acceptable gold answers.

    Returns:
        1.0 on a match, else 0.0.

    Raises:
        TypeError: If ``answers`` is a single string.
        ValueError: If ``answers`` is empty.
    """
    _check_answers(answers)
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(answer) for answer in answers))


def _validate_row(row: Any) -> tuple[str, list[str]]:
    """Check a prediction row's shape and pull out its fields.

    Args:
        row: A mapping expected to hold ``prediction`` and ``answers``.

    Returns:
        The prediction and the list of gold answers.

    Raises:
        ValueError: Naming the offending field and what is expected.
    """
    if not isinstance(row, dict):
        raise ValueError(f"row must be an object with 'prediction' and 'answers', got {type(row).__name__}")
    prediction = row.get("prediction")
    if not isinstance(prediction, str):
        raise ValueError(f"'prediction' must be a string, got {_describe(prediction)}")
    answers = row.get("answers")
    # A bare string is refused: it is usually a mistake and would be scored per character.
    valid = isinstance(answers, (list, tuple)) and len(answers) > 0
    if not valid or not all(isinstance(answer, str) for answer in answers):
        raise ValueError(f"'answers' must be a non-empty list of strings, got {_describe(answers)}")
    return prediction, list(answers)


def _describe(value: Any) -> str:
    """Describe a bad field value briefly for error messages.

    Args:
        value: The offending value (``None`` when the field is missing).

    Returns:
        ``"nothing (field missing)"`` or the value's type name.
    """
    if value is None:
        return "nothing (field missing or null)"
    return type(value).__name__


def _score_pair(prediction: str, answers: list[str]) -> dict[str, float]:
    """Compute both per-sample metrics.

    Args:
        prediction: Predicted answer.
        answers: Gold answers (already validated).

    Returns:
        ``{"anls": float, "exact_match": float}``.
    """
    return {"anls": anls(prediction, answers), "exact_match": exact_match(prediction, answers)}


def _aggregate(scores: list[dict[str, float]]) -> dict[str, float | int]:
    """Average per-sample scores.

    Args:
        scores: Per-sample metric dicts from :func:`_score_pair`.

    Returns:
        ``{"anls": mean, "exact_match": mean, "num_samples": n}``.

    Raises:
        ValueError: If there are no samples.
    """
    if not scores:
        raise ValueError("no samples to score: the input holds no rows")
    count = len(scores)
    return {
        "anls": sum(score["anls"] for score in scores) / count,
        "exact_match": sum(score["exact_match"] for score in scores) / count,
        "num_samples": count,
    }


def summarize(rows: Iterable[dict]) -> dict[str, float | int]:
    """Compute mean ANLS and exact match over prediction rows.

    Args:
        rows: Mappings each holding ``prediction`` (str) and ``answers``
            (non-empty list of str).

    Returns:
        ``{"anls": mean, "exact_match": mean, "num_samples": n}``.

    Raises:
        ValueError: If there are no rows, or a row is malformed (the message
            names its 0-based index and the field).
    """
    scores = []
    for index, row in enumerate(rows):
        try:
            prediction, answers = _validate_row(row)
        except ValueError as exc:
            raise ValueError(f"row {index}: {exc}") from exc
        scores.append(_score_pair(prediction, answers))
    return _aggregate(scores)


def _read_rows(path: Path) -> list[tuple[dict, str, list[str]]]:
    """Read and validate a JSONL prediction file.

    Args:
        path: File with one JSON object per line; blank lines are skipped.

    Returns:
        ``(row, prediction, answers)`` for each non-blank line, in order.

    Raises:
        ScoreInputError: If the file does not exist, or a line is not valid JSON
            or misses a field; the message names the file and the 1-based line number.
    """
    if not path.is_file():
        raise ScoreInputError(f"{path}: no such file; pass a JSONL file with 'prediction' and 'answers' per line")
    parsed = []
    for line_number, row in read_jsonl(path, ScoreInputError):
        try:
            prediction, answers = _validate_row(row)
        except ValueError as exc:
            raise ScoreInputError(f"{path} line {line_number}: {exc}") from exc
        parsed.append((row, prediction, answers))
    return parsed


def score_jsonl(
    path: str | os.PathLike, per_sample_out: str | os.PathLike | None = None
) -> dict[str, float | int]:
    """Score a JSONL file of predictions from any system.

    Args:
        path: JSONL file; each line an object with ``prediction`` (str) and
            ``answers`` (non-empty list of str). Other fields are kept.
        per_sample_out: Optional JSONL path receiving each input row with
            ``anls`` and ``exact_match`` added, written atomically.

    Returns:
        ``{"anls": mean, "exact_match": mean, "num_samples": n}``.

    Raises:
        ValueError: If the file is empty or a line is malformed; the message
            names the file and line, e.g.
            ``preds.jsonl line 7: 'answers' must be a non-empty list of strings``.
    """
    source = Path(path)
    parsed = _read_rows(source)
    if not parsed:
        raise ScoreInputError(f"{source}: no prediction rows found; the file is empty")
    scores = [_score_pair(prediction, answers) for _, prediction, answers in parsed]
    if per_sample_out is not None:
        out_rows = ({**row, **score} for (row, _, _), score in zip(parsed, scores))
        write_jsonl_atomic(Path(per_sample_out), out_rows)
    return _aggregate(scores)
