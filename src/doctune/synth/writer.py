"""Write a synthetic DocVQA-style dataset (PNG pages + one JSONL row per question)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
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

    Returns:
        Path of the written ``data.jsonl``.

    Raises:
        ValueError: If ``kinds`` is empty or unknown, or ``num_docs`` is negative.
    """
    _check_request(kinds, num_docs)
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    target = root / "data.jsonl"
    # Rows stream into a temp file that replaces data.jsonl only when complete.
    with _atomic_text(target) as out:
        for index in tqdm(range(num_docs), desc="synth", unit="doc", disable=not progress):
            kind = kinds[index % len(kinds)]
            doc = generate_document(kind, document_seed(seed, index), width=width, noise=noise)
            name = f"{kind}-{seed}-{index}"
            _save_png(doc, root / "images" / f"{name}.png")
            for row in question_rows(doc, name, f"images/{name}.png"):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target
