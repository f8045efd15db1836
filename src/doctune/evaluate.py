"""Score a model on a question-answering dataset with ANLS and exact match."""

import json
import logging
from pathlib import Path

from tqdm.auto import tqdm

from doctune.data import DocVQADataset, load_docvqa
from doctune.files import write_jsonl_atomic, write_text_atomic
from doctune.inference import Predictor, load_predictor
from doctune.metrics import anls, summarize
from doctune.prompt import answer_token_counts

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"

log = logging.getLogger(__name__)


def predict_dataset(predictor: Predictor, dataset: DocVQADataset, batch_size: int, progress: bool = True) -> list[dict]:
    """Answer every question of ``dataset``.

    Returns:
        One row per question: ``id``, ``question``, ``prediction``, ``answers``, ``anls``.
    """
    rows = []
    bar = tqdm(total=len(dataset), desc="evaluating", unit="q", disable=not progress)
    for start in range(0, len(dataset), batch_size):
        examples = dataset.examples(range(start, min(start + batch_size, len(dataset))))
        predictions = predictor.answer([e.image for e in examples], [e.question for e in examples])
        for example, prediction in zip(examples, predictions):
            rows.append({"id": example.id, "question": example.question, "prediction": prediction,
                         "answers": list(example.answers), "anls": anls(prediction, example.answers)})
        bar.update(len(examples))
    bar.close()
    return rows


def evaluate(predictor: Predictor, dataset: DocVQADataset, batch_size: int, progress: bool = True) -> tuple[dict, list[dict]]:
    """(metrics ``{"anls", "exact_match", "num_samples"}``, per-question rows)."""
    rows = predict_dataset(predictor, dataset, batch_size, progress)
    _warn_of_answers_past_the_limit(predictor, rows)
    return summarize(rows), rows


def _warn_of_answers_past_the_limit(predictor: Predictor, rows: list[dict]) -> None:
    """Log how many questions have no gold answer that fits in ``max_new_tokens``: their
    predictions were cut short whatever the model read, so they cannot score in full."""
    counts = iter(answer_token_counts(predictor.processor, [answer for row in rows for answer in row["answers"]]))
    needed = [min(next(counts) for _ in row["answers"]) for row in rows]
    cut = [n for n in needed if n > predictor.max_new_tokens]
    if cut:
        log.warning("%d of %d questions have no gold answer that fits in max_new_tokens=%d (the longest needs %d "
                    "tokens); their answers are cut short: raise max_new_tokens (--max-new-tokens)",
                    len(cut), len(rows), predictor.max_new_tokens, max(cut))


def write_results(output: Path, metrics: dict, rows: list[dict]) -> None:
    """Write ``metrics.json`` and ``predictions.jsonl`` into ``output``, each atomically."""
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_jsonl_atomic(output / PREDICTIONS_FILE, rows)


def evaluate_model(model: str, data: str, output: Path, split: str = "test", language: str = "en",
                   batch_size: int = 8, max_new_tokens: int = 32, max_samples: int | None = None,
                   skip_invalid: bool = False, precision: str = "auto", num_beams: int = 1) -> tuple[dict, list[dict]]:
    """Evaluate ``model`` on ``data`` and write ``metrics.json`` and ``predictions.jsonl`` to ``output``.

    The data is validated before the model loads, so a bad record costs no loading time.

    Returns:
        (metrics, per-question rows), as written.
    """
    dataset = load_docvqa(data, split, language, skip_invalid, max_samples)
    predictor = load_predictor(model, max_new_tokens, precision, num_beams)
    metrics, rows = evaluate(predictor, dataset, batch_size)
    if dataset.report.skipped:
        metrics["skipped_records"] = dataset.report.skipped
    write_results(output, metrics, rows)
    return metrics, rows
