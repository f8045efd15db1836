"""Open the places question-answering data can come from: the hub, save_to_disk folders,
parquet files or folders, and JSONL files. Rows come out as plain mappings for validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from doctune.errors import DoctuneError
from doctune.files import read_jsonl

LOCAL_SOURCES_HINT = "a save_to_disk folder, a .parquet file or folder of .parquet files, or a .jsonl file"
# Column names accepted for the question, in order of preference.
QUESTION_COLUMNS = ("query", "question")
# Parquet files named after one of these are split files; see _split_parquet_files.
_SPLIT_NAMES = ("train", "test", "validation", "valid", "val", "dev", "eval")


class DataError(DoctuneError, ValueError):
    """The data source or one of its records cannot be used.

    The message names the source, and for record problems the record index,
    its id, what is wrong and how to proceed.
    """


@dataclass(frozen=True)
class OpenedSource:
    """Rows of a source, ready for validation."""

    rows: Sequence[dict[str, Any]]
    name: str
    base_dir: Path | None




def open_source(source: str, split: str) -> OpenedSource:
    """Open whatever ``source`` names: a local file, folder, or hub id.

    Raises:
        DataError: If a local-looking path does not exist, or the source
            cannot be read.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return _open_file(path)
    if path.is_dir():
        return _open_folder(path, split)
    if _looks_local(source):
        raise DataError(
            f"Data source {source!r} does not exist (looked for {path.absolute()}). "
            "Check the path, or give a Hugging Face hub dataset id such as 'nielsr/docvqa_1200_examples'."
        )
    return _open_hub(source, split)


def _looks_local(source: str) -> bool:
    """Tell whether a non-existent source was meant as a local path, not a hub id."""
    return source.startswith((".", "/", "~")) or source.endswith((".parquet", ".jsonl"))


def _open_file(path: Path) -> OpenedSource:
    """Open a single ``.parquet`` or ``.jsonl`` file.

    Raises:
        DataError: For any other file type.
    """
    if path.suffix == ".parquet":
        return _open_parquet([path], str(path), path.parent)
    if path.suffix == ".jsonl":
        return _open_jsonl(path)
    raise DataError(f"Unsupported data file {path}: expected {LOCAL_SOURCES_HINT}.")


def _open_folder(path: Path, split: str) -> OpenedSource:
    """Open a save_to_disk folder, a split JSONL, a lone ``data.jsonl``, or parquet files in ``path``.

    A folder whose JSONL is a lone ``data.jsonl`` (what ``doctune synth`` writes) is one
    dataset: it is read for any split, as a single JSONL file is.

    Raises:
        DataError: If the folder holds none of these, or not the split.
    """
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return _open_saved(path, split)
    for candidate in (path / f"{split}.jsonl", path / split / "data.jsonl", path / "data.jsonl"):
        if candidate.is_file():
            return _open_jsonl(candidate)
    files = _split_parquet_files(path, split)
    if files:
        return _open_parquet(files, f"{path} (split {split!r})", path)
    raise DataError(
        f"Folder {path} holds no data for split {split!r}: expected a save_to_disk folder, "
        f"{split}.jsonl, {split}/data.jsonl, data.jsonl, or .parquet files."
    )


def _split_parquet_files(folder: Path, split: str) -> list[Path]:
    """Pick the parquet files of ``split`` in ``folder`` (searched recursively).

    Files named after the split (``train.parquet``, ``train-00000-of-00001.parquet``)
    are used when present; otherwise all parquet files, unless some are named
    after other standard splits, since using them would silently mix splits.

    Returns:
        The files, sorted; empty if the folder has no parquet files.

    Raises:
        DataError: If only other splits' files are present.
    """
    files = sorted(folder.rglob("*.parquet"))
    matching = [file for file in files if _named_after(file, split)]
    if matching:
        return matching
    other_splits = [name for name in _SPLIT_NAMES if any(_named_after(file, name) for file in files)]
    if other_splits:
        raise DataError(
            f"Folder {folder} has no parquet files for split {split!r}; it has files for: "
            f"{', '.join(other_splits)}. Pass one of those splits."
        )
    return files


def _named_after(file: Path, split: str) -> bool:
    """Tell whether a parquet file is named after ``split`` (``train.parquet``, ``train-0.parquet``)."""
    return file.name == f"{split}.parquet" or file.name.startswith((f"{split}-", f"{split}_", f"{split}."))


def _open_parquet(files: list[Path], name: str, base_dir: Path) -> OpenedSource:
    """Load parquet files, reading only the columns doctune uses.

    Raises:
        DataError: If a file is not readable parquet or lacks a column.
    """
    columns = _needed_columns(_parquet_columns(files[0]), name)
    dataset = datasets.load_dataset("parquet", data_files=[str(file) for file in files], split="train", columns=columns)
    return OpenedSource(_prepare(dataset, name), name, base_dir)


def _parquet_columns(file: Path) -> list[str]:
    """Read a parquet file's column names.

    Raises:
        DataError: If the file is not readable parquet.
    """
    try:
        return pq.read_schema(file).names
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"Could not read parquet file {file}: {exc}. Check that it is a complete parquet file."
        ) from exc


def _open_saved(path: Path, split: str) -> OpenedSource:
    """Open a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``.

    Raises:
        DataError: If a DatasetDict lacks ``split``.
    """
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path} has no split {split!r}; available splits: {', '.join(loaded)}. Pass one of those.")
        loaded = loaded[split]
        name = f"{path} (split {split!r})"
    else:
        name = str(path)
    return OpenedSource(_prepare(loaded, name), name, path)


def _open_hub(source: str, split: str) -> OpenedSource:
    """Load a dataset from the Hugging Face hub (or its local cache).

    Raises:
        DataError: If the hub cannot be reached, the dataset or split does not
            exist, or required columns are missing.
    """
    name = f"hub dataset {source!r} (split {split!r})"
    try:
        dataset = datasets.load_dataset(source, split=split)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"Could not load {name}: {exc}. Check the dataset id, the split and your network connection "
            f"(HF_HUB_OFFLINE=1 allows only cached datasets), or pass a local copy: {LOCAL_SOURCES_HINT}."
        ) from exc
    return OpenedSource(_prepare(dataset, name), name, None)


def _open_jsonl(path: Path) -> OpenedSource:
    """Read a JSONL file; image paths are relative to its folder."""
    return OpenedSource(_read_jsonl(path), str(path), path.parent)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse a JSONL file into records, skipping blank lines.

    Raises:
        DataError: If a line is not a JSON object.
    """
    records = []
    for line_number, record in read_jsonl(path, DataError):
        if not isinstance(record, dict):
            raise DataError(
                f"{path} line {line_number}: a JSON {type(record).__name__}; expected an object "
                "with image, query (or question) and answers."
            )
        records.append(record)
    return records


def _needed_columns(columns: Sequence[str], name: str) -> list[str]:
    """Choose the columns to keep, checking the required ones exist.

    Args:
        columns: Columns the source has.
        name: Source name for messages.

    Returns:
        ``id`` (when present), ``image``, the question column and ``answers``.

    Raises:
        DataError: If ``image``, ``answers`` or a question column is missing.
    """
    question = next((column for column in QUESTION_COLUMNS if column in columns), None)
    missing = [column for column in ("image", "answers") if column not in columns]
    if question is None:
        missing.append("query")
    if missing:
        raise DataError(
            f"{name} lacks column(s) {', '.join(missing)}; it has: {', '.join(columns)}. "
            "Expected the DocVQA layout: id, image, query (or question), answers."
        )
    return [column for column in ("id", "image", question, "answers") if column in columns]


def _prepare(dataset: datasets.Dataset, name: str) -> datasets.Dataset:
    """Keep the needed columns and switch off automatic image decoding.

    Raises:
        DataError: If columns are missing or ``image`` is neither an image
            feature nor a path string.
    """
    dataset = dataset.select_columns(_needed_columns(dataset.column_names, name))
    feature = dataset.features["image"]
    if isinstance(feature, datasets.Image):
        # Raw {"bytes", "path"} values let us decode with doctune's robust loaders, lazily.
        return dataset.cast_column("image", datasets.Image(decode=False))
    if feature == datasets.Value("string"):
        return dataset
    raise DataError(f"{name}: column 'image' has type {feature}; expected a datasets Image feature or path strings.")
