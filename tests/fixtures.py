"""Build small DocVQA-style data sets on disk for tests.

The layout mirrors the hub dataset ``nielsr/docvqa_1200_examples`` exactly:
``id`` string, ``image`` as the ``datasets.Image`` feature (a struct of PNG
bytes and path), ``query`` as a struct keyed by language (de/en/es/fr/it),
``answers`` list<string>, plus the ``words``, ``bounding_boxes`` and
``answer`` columns that doctune ignores. Files are written with
``datasets.Dataset.to_parquet`` so they carry the same schema metadata the
hub serves.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import datasets
from PIL import Image, ImageDraw

LANGUAGES = ("de", "en", "es", "fr", "it")
DEFAULT_SIZE = (96, 128)


def docvqa_features(query_as_string: bool = False) -> datasets.Features:
    """Return the features of ``nielsr/docvqa_1200_examples``.

    Args:
        query_as_string: Use a plain string ``query`` column instead of the
            per-language struct.

    Returns:
        The ``datasets.Features`` describing one record.
    """
    if query_as_string:
        query = datasets.Value("string")
    else:
        query = {lang: datasets.Value("string") for lang in LANGUAGES}
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "query": query,
            "answers": datasets.List(datasets.Value("string")),
            "words": datasets.List(datasets.Value("string")),
            "bounding_boxes": datasets.List(datasets.List(datasets.Value("float32"))),
            "answer": datasets.Value("string"),
        }
    )


def make_page_image(index: int, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """Draw a small white page with a few lines of text.

    Args:
        index: Record number, written on the page so pages differ.
        size: ``(width, height)`` in pixels.

    Returns:
        An RGB PIL image.
    """
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), f"Invoice {index}", fill="black")
    draw.text((4, 20), f"Total: {index * 10} EUR", fill="black")
    draw.rectangle((2, 2, size[0] - 3, size[1] - 3), outline="gray")
    return image


def page_png_bytes(index: int, size: tuple[int, int] = DEFAULT_SIZE) -> bytes:
    """Return the PNG encoding of :func:`make_page_image`.

    Args:
        index: Record number drawn on the page.
        size: ``(width, height)`` in pixels.

    Returns:
        PNG file bytes.
    """
    buffer = io.BytesIO()
    make_page_image(index, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _query(index: int, query_as_string: bool) -> dict[str, str] | str:
    """Return the question for record ``index`` in every language."""
    if query_as_string:
        return f"What is the total of invoice {index}?"
    return {lang: f"[{lang}] What is the total of invoice {index}?" for lang in LANGUAGES}


def docvqa_rows(
    n: int = 6,
    size: tuple[int, int] = DEFAULT_SIZE,
    prefix: str = "train",
    query_as_string: bool = False,
    overrides: dict[int, dict[str, Any]] | None = None,
) -> dict[str, list[Any]]:
    """Build the columns of ``n`` DocVQA records.

    Args:
        n: Number of records.
        size: Page size ``(width, height)``.
        prefix: Prefix of the record ids (``f"{prefix}-{i}"``).
        query_as_string: Write ``query`` as a plain string.
        overrides: ``{record_index: {column: value}}`` replacing generated
            values, used to plant invalid records.

    Returns:
        A column-name to values mapping for ``Dataset.from_dict``.
    """
    rows = []
    for i in range(n):
        row = {
            "id": f"{prefix}-{i}",
            "image": {"bytes": page_png_bytes(i, size), "path": None},
            "query": _query(i, query_as_string),
            "answers": [f"{i * 10} EUR", f"{i * 10}"],
            "words": ["Invoice", str(i), "Total:", str(i * 10), "EUR"],
            "bounding_boxes": [[4.0, 4.0, 40.0, 14.0]] * 5,
            "answer": f"{i * 10} EUR",
        }
        row.update((overrides or {}).get(i, {}))
        rows.append(row)
    return {column: [row[column] for row in rows] for column in rows[0]}


def make_docvqa_dataset(n: int = 6, size: tuple[int, int] = DEFAULT_SIZE, **kwargs: Any) -> datasets.Dataset:
    """Build an in-memory ``datasets.Dataset`` in the hub layout.

    Args:
        n: Number of records.
        size: Page size ``(width, height)``.
        **kwargs: Passed to :func:`docvqa_rows` (prefix, query_as_string, overrides).

    Returns:
        The dataset, with the hub's features.
    """
    features = docvqa_features(kwargs.get("query_as_string", False))
    return datasets.Dataset.from_dict(docvqa_rows(n, size, **kwargs), features=features)


def make_docvqa_parquet(path: str | Path, n: int = 6, size: tuple[int, int] = DEFAULT_SIZE, **kwargs: Any) -> Path:
    """Write a parquet file in the ``nielsr/docvqa_1200_examples`` layout.

    Args:
        path: File to write (parent folders are created).
        n: Number of records.
        size: Page size ``(width, height)``.
        **kwargs: Passed to :func:`docvqa_rows` (prefix, query_as_string, overrides).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_docvqa_dataset(n, size, **kwargs).to_parquet(str(path))
    return path


def make_docvqa_parquet_folder(folder: str | Path, splits: dict[str, int] | None = None) -> Path:
    """Write one hub-style shard per split, e.g. ``train-00000-of-00001.parquet``.

    Args:
        folder: Folder to write into.
        splits: ``{split: number_of_records}``; default train=6, test=3.

    Returns:
        The folder.
    """
    folder = Path(folder)
    for split, n in (splits or {"train": 6, "test": 3}).items():
        make_docvqa_parquet(folder / f"{split}-00000-of-00001.parquet", n, prefix=split)
    return folder


def make_docvqa_saved_dict(folder: str | Path, splits: dict[str, int] | None = None) -> Path:
    """Write a ``DatasetDict`` with ``save_to_disk``.

    Args:
        folder: Target folder.
        splits: ``{split: number_of_records}``; default train=4, test=2.

    Returns:
        The folder.
    """
    splits = splits or {"train": 4, "test": 2}
    dataset_dict = datasets.DatasetDict({split: make_docvqa_dataset(n, prefix=split) for split, n in splits.items()})
    dataset_dict.save_to_disk(str(folder))
    return Path(folder)


def make_docvqa_jsonl(
    path: str | Path,
    n: int = 4,
    size: tuple[int, int] = DEFAULT_SIZE,
    image_dir: str = "images",
    rows: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a JSONL file whose ``image`` fields are paths relative to it.

    Page PNGs go to ``<jsonl folder>/<image_dir>/page_<i>.png``.

    Args:
        path: JSONL file to write.
        n: Number of records (ignored when ``rows`` is given).
        size: Page size ``(width, height)``.
        image_dir: Sub-folder for the page images, relative to the JSONL file.
        rows: Records to write verbatim instead of generated ones; images
            ``page_0.png`` .. ``page_{n-1}.png`` are still written.

    Returns:
        The JSONL path.
    """
    path = Path(path)
    (path.parent / image_dir).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_page_image(i, size).save(path.parent / image_dir / f"page_{i}.png")
    if rows is None:
        rows = [
            {
                "id": f"doc-{i}",
                "image": f"{image_dir}/page_{i}.png",
                "query": _query(i, False),
                "answers": [f"{i * 10} EUR"],
            }
            for i in range(n)
        ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
