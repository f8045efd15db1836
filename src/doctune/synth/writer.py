"""Write a synthetic DocVQA-style dataset (PNG pages + one JSONL row per question)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from doctune.synth.document import KINDS, Document, derive_seed, generate_document


def document_seed(seed: int, index: int) -> int:
    """Return the seed of document ``index`` of a set built from base ``seed``.

    Args:
        seed: Base seed of the set.
        index: Position of the document in the set.

    Returns:
        A 128-bit seed; sets with different base seeds get unrelated streams.
    """
    return derive_seed("set", seed, index)


def question_rows(doc: Document, doc_id: str, image: str) -> list[dict]:
    """Return one DocVQA-layout row per question of a document.

    Args:
        doc: The document.
        doc_id: Identifier shared by the document's rows.
        image: Image path relative to the JSONL file.

    Returns:
        Row dicts ready to be serialised.
    """
    return [
        {
            "id": f"{doc_id}-q{number}",
            "image": image,
            "query": {"en": question},
            "answers": [answer],
            "answer": answer,
            "kind": doc.kind,
            "words": doc.words,
            "bounding_boxes": doc.bounding_boxes,
        }
        for number, (question, answer) in enumerate(doc.qa)
    ]


def _save_png(doc: Document, path: Path) -> None:
    # Write next to the target, then rename, so a crash never leaves a torn image.
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(handle)
    try:
        doc.image.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_document(root: Path, kinds: list[str], seed: int, width: int, noise: float, index: int) -> list[dict]:
    """Render document ``index`` of the set, save its page and return its rows (run in a worker)."""
    kind = kinds[index % len(kinds)]
    doc = generate_document(kind, document_seed(seed, index), width=width, noise=noise)
    name = f"{kind}-{seed}-{index}"
    _save_png(doc, root / "images" / f"{name}.png")
    return question_rows(doc, name, f"images/{name}.png")


def default_workers() -> int:
    """Processes :func:`write_dataset` renders with by default: one per usable core, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, cores)


def _pool_context() -> multiprocessing.context.BaseContext:
    # Forked workers on Linux (as torch's DataLoader uses): they render with PIL only, and need no
    # `if __name__ == "__main__"` guard in the caller's script. Elsewhere the platform's default
    # (spawn), which re-imports the caller's main module in each worker.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)


@contextlib.contextmanager
def _document_rows(write, num_docs: int, workers: int) -> Iterator[Iterator[list[dict]]]:
    """Each document's rows in index order, rendered in ``workers`` processes (in this one for 1)."""
    if workers == 1 or num_docs < 2 * workers:
        yield map(write, range(num_docs))
        return
    pool = ProcessPoolExecutor(workers, mp_context=_pool_context())
    try:
        yield pool.map(write, range(num_docs), chunksize=max(1, min(16, num_docs // (4 * workers))))
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, render nothing more


@contextlib.contextmanager
def _atomic_text(path: Path) -> Iterator[TextIO]:
    """Open a temp file beside ``path`` and move it into place only on success."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            yield out
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_request(kinds: list[str], num_docs: int) -> None:
    # Validate before anything is written so a bad call leaves no partial output.
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
    if num_docs < 0:
        raise ValueError(f"num_docs must be >= 0, got {num_docs}")


def write_dataset(
    out_dir: str | os.PathLike,
    kinds: list[str],
    num_docs: int,
    seed: int,
    noise: float = 0.0,
    width: int = 448,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Generate ``num_docs`` documents and write them in the DocVQA layout.

    Documents cycle through ``kinds`` (document ``i`` has kind
    ``kinds[i % len(kinds)]``) and are saved as ``images/<kind>-<seed>-<i>.png``.

    Args:
        out_dir: Output folder (created if missing).
        kinds: Document kinds to include.
        num_docs: Number of documents (pages) in total.
        seed: Base seed; document ``i`` uses :func:`document_seed` ``(seed, i)``.
        noise: Scan-noise strength in ``[0, 1]``.
        width: Page width in pixels.
        progress: Show a tqdm progress bar.
        workers: Processes that render pages (default :func:`default_workers`). The output is
            the same for any number: each document has its own seed.

    Returns:
        Path of the written ``data.jsonl``.

    Raises:
        ValueError: If ``kinds`` is empty or unknown, ``num_docs`` is negative or ``workers`` below 1.
    """
    _check_request(kinds, num_docs)
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    target = root / "data.jsonl"
    write = partial(_write_document, root, list(kinds), seed, width, noise)
    # Rows stream into a temp file that replaces data.jsonl only when complete.
    with _atomic_text(target) as out, _document_rows(write, num_docs, workers) as docs:
        for rows in tqdm(docs, total=num_docs, desc="synth", unit="doc", disable=not progress):
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target
