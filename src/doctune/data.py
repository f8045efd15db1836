"""Read document question-answering data in the DocVQA layout.

The reference layout is the hub dataset ``nielsr/docvqa_1200_examples``:
``id``, ``image`` (a ``datasets.Image``), ``query`` (a struct keyed by
language, or a plain string) and ``answers`` (a list of strings). Other
columns (``words``, ``bounding_boxes``, ``answer``) are dropped before any
row is read, so their data is never materialised.

Every record is validated once, when the dataset is built, so a bad record
stops the run before training starts instead of hours into it. Page images
are decoded again lazily in ``__getitem__``: DocVQA pages are large and the
decoded pages of a whole split do not fit in memory.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.utils.data
from PIL import Image
from tqdm import tqdm

from doctune.images import ImageLoadError, decode_image_bytes, load_page, to_rgb
from doctune.sources import QUESTION_COLUMNS, DataError, open_source

SKIP_HINT = (
    "Fix the record, or pass skip_invalid=True (CLI: data.skip_invalid=true) to skip invalid records and count them."
)





class _RecordProblem(Exception):
    """One record is invalid; internal, turned into DataError or a report line."""


@dataclass(frozen=True)
class Example:
    """One question about one document page.

    Attributes:
        id: Record id from the source (its index when the source has none).
        image: The page, decoded to RGB.
        question: The question in the selected language.
        answers: Accepted answers, at least one.
    """

    id: str
    image: Image.Image
    question: str
    answers: list[str]


@dataclass
class DataReport:
    """What validation found.

    Attributes:
        total: Records examined (fewer than the source holds when
            ``max_samples`` was reached early).
        kept: Valid records in the dataset.
        skipped: Invalid records left out (only with ``skip_invalid``).
        problems: One line per skipped record: index, id and the problem.
    """

    total: int = 0
    kept: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    """The validated text of a kept record; its image stays in the source."""

    row: int
    id: str
    question: str
    answers: tuple[str, ...]
    page: str  # what identifies the page image, for grouping the questions about one page





class DocVQADataset(torch.utils.data.Dataset):
    """Validated DocVQA records that decode their page image on access.

    Args:
        rows: Records as mappings (a ``datasets.Dataset`` or a list of
            dicts) with ``image``, ``query`` (or ``question``), ``answers``
            and optionally ``id``. ``image`` may be ``{"bytes", "path"}``
            (a ``datasets.Image(decode=False)`` value), a path string, or a
            PIL image.
        source_name: How to name the source in messages.
        language: Key of the ``query`` mapping to use.
        skip_invalid: Skip and count invalid records instead of raising.
        max_samples: Keep only the first N valid records; ``None`` keeps all.
        base_dir: Folder that relative image paths are resolved against.

    Raises:
        DataError: If a record is invalid (and ``skip_invalid`` is off), or
            no valid record remains.
        ValueError: If ``max_samples`` is not a positive integer or None.
    """

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        source_name: str,
        language: str = "en",
        skip_invalid: bool = False,
        max_samples: int | None = None,
        base_dir: Path | None = None,
    ) -> None:
        _check_max_samples(max_samples)
        self.source_name = source_name
        self.language = language
        self._rows = rows
        self._base_dir = base_dir
        self._entries, self.report = self._validate(skip_invalid, max_samples)

    def __len__(self) -> int:
        """Return the number of valid records kept."""
        return len(self._entries)

    def __getitem__(self, index: int) -> Example:
        """Return record ``index`` with its page decoded to RGB.

        Args:
            index: Position among the kept records.

        Returns:
            The example.

        Raises:
            IndexError: If ``index`` is out of range.
            ImageLoadError: If the image became unreadable after validation.
        """
        return self.examples([index])[0]

    def examples(self, indices: Sequence[int]) -> list[Example]:
        """Records ``indices`` in that order; each distinct page among them is decoded once and
        shared, so records about one page hold the same image object."""
        pages: dict[str, Image.Image] = {}
        examples = []
        for index in indices:
            entry = self._entries[index]
            if entry.page not in pages:
                value = self._rows[entry.row]["image"]
                pages[entry.page] = _load_image(value, self._base_dir, self._record_name(entry.row, entry.id))
            examples.append(Example(id=entry.id, image=pages[entry.page], question=entry.question,
                                    answers=list(entry.answers)))
        return examples

    def page_key(self, index: int) -> str:
        """What identifies record ``index``'s page: equal for records that show the same image."""
        return self._entries[index].page

    def question_and_answers(self, index: int) -> tuple[str, list[str]]:
        """Record ``index``'s question and gold answers, without decoding its page."""
        entry = self._entries[index]
        return entry.question, list(entry.answers)

    def _record_name(self, row: int, record_id: str) -> str:
        """Name a record for messages: source, index and id."""
        return f"{self.source_name} record {row} (id {record_id!r})"

    def _validate(self, skip_invalid: bool, max_samples: int | None) -> tuple[list[_Entry], DataReport]:
        """Check records in order until ``max_samples`` valid ones are found.

        Args:
            skip_invalid: Record bad records in the report instead of raising.
            max_samples: Stop after this many valid records; None checks all.

        Returns:
            The kept entries and the validation report.

        Raises:
            DataError: On the first invalid record unless ``skip_invalid``,
                or when no valid record remains.
        """
        entries: list[_Entry] = []
        report = DataReport()
        readable: set[str] = set()  # pages already decoded: a page's other questions skip decoding it again
        progress = tqdm(self._rows, total=len(self._rows), desc=f"Checking {self.source_name}", unit="record")
        with progress:
            for row, record in enumerate(progress):
                report.total += 1
                try:
                    entries.append(self._check_record(row, record, readable))
                except _RecordProblem as problem:
                    line = f"record {row} (id {_record_id(record, row)!r}): {problem}"
                    if not skip_invalid:
                        raise DataError(f"Invalid record in {self.source_name}: {line}. {SKIP_HINT}") from problem
                    report.problems.append(line)
                if max_samples is not None and len(entries) >= max_samples:
                    break
        report.kept, report.skipped = len(entries), len(report.problems)
        self._check_not_empty(report)
        return entries, report

    def _check_record(self, row: int, record: Any, readable: set[str]) -> _Entry:
        """Validate one record, decoding its image fully unless its page was decoded before.

        Args:
            row: Index of the record in the source.
            record: The raw record.
            readable: Keys of the pages decoded so far; the record's page is added.

        Returns:
            The record's validated text fields.

        Raises:
            _RecordProblem: Describing the first problem found.
        """
        if not isinstance(record, dict):
            raise _RecordProblem(f"expected a mapping of fields, got {type(record).__name__}")
        record_id = _record_id(record, row)
        question = _question(record, self.language)
        answers = _answers(record)
        value = _required(record, "image")
        page = _stored_page_key(value, self._base_dir)
        if page is None or page not in readable:
            try:
                # Decode once to prove the image is readable, then let it go: pages are big.
                image = _load_image(value, self._base_dir, self._record_name(row, record_id))
            except ImageLoadError as exc:
                raise _RecordProblem(f"unreadable image: {exc}") from exc
            page = page or _pixels_key(image)
            readable.add(page)
        return _Entry(row=row, id=record_id, question=question, answers=answers, page=page)

    def _check_not_empty(self, report: DataReport) -> None:
        """Refuse a dataset without records.

        Args:
            report: The finished validation report.

        Raises:
            DataError: If no record was kept.
        """
        if report.kept:
            return
        if not report.total:
            raise DataError(f"{self.source_name} holds no records; check that the source and split are right.")
        raise DataError(
            f"No valid records in {self.source_name}: all {report.total} records are invalid. "
            f"First problem: {report.problems[0]}"
        )


class PageConversations(torch.utils.data.Dataset):
    """Training samples of up to ``per_sample`` questions about the same page.

    A sample is trained on as one multi-turn chat that shows its page once, so the page's
    image tokens are encoded once for all of its answers. With ``per_sample=1`` every record is
    its own sample, in the dataset's order. Otherwise each page's questions (pages in order of
    first appearance) are shuffled with ``seed`` and dealt into the fewest samples that hold at
    most ``per_sample``, whose sizes differ by at most one: the same samples for the same seed,
    so a resumed run sees the same conversations.

    Args:
        dataset: The validated records.
        per_sample: Most questions in one sample.
        seed: Seed of the order of questions within a page.
    """

    def __init__(self, dataset: DocVQADataset, per_sample: int = 1, seed: int = 0) -> None:
        if per_sample < 1:
            raise ValueError(f"per_sample must be at least 1, got {per_sample}")
        self.dataset = dataset
        if per_sample == 1:
            self.samples = [[index] for index in range(len(dataset))]
            return
        pages: dict[str, list[int]] = {}
        for index in range(len(dataset)):
            pages.setdefault(dataset.page_key(index), []).append(index)
        rng = random.Random(seed)
        self.samples = []
        for indices in pages.values():
            rng.shuffle(indices)
            count = -(-len(indices) // per_sample)
            self.samples.extend(indices[part::count] for part in range(count))

    def __len__(self) -> int:
        """Return the number of samples."""
        return len(self.samples)

    def __getitem__(self, index: int) -> list[Example]:
        """Return sample ``index``: its questions, sharing one decoded page."""
        return self.dataset.examples(self.samples[index])

    def texts(self, index: int) -> list[tuple[str, list[str]]]:
        """Sample ``index``'s (question, answers) pairs, without decoding its page."""
        return [self.dataset.question_and_answers(i) for i in self.samples[index]]


def load_docvqa(
    source: str,
    split: str = "train",
    language: str = "en",
    skip_invalid: bool = False,
    max_samples: int | None = None,
) -> DocVQADataset:
    """Load and validate DocVQA-style question-answering data.

    Args:
        source: A Hugging Face hub dataset id (``nielsr/docvqa_1200_examples``),
            a ``save_to_disk`` folder, a ``.parquet`` file or folder of
            parquet files, a ``.jsonl`` file, or a folder holding
            ``<split>.jsonl``, ``<split>/data.jsonl`` or one ``data.jsonl``
            (as ``doctune synth`` writes). Existing local paths win over hub ids.
        split: Split to read. Ignored for a single parquet or JSONL file and
            for a folder saved from a single ``Dataset``.
        language: Key of the ``query`` mapping to use; plain-string queries
            are used as they are.
        skip_invalid: Skip and count invalid records (see ``report``).
        max_samples: Keep only the first N valid records.

    Returns:
        The validated dataset; ``dataset.report`` says what was skipped.

    Raises:
        DataError: If the source is missing, unreadable, lacks a required
            column or the split, or holds an invalid record.
        ValueError: If ``max_samples`` is not a positive integer or None.
    """
    _check_max_samples(max_samples)
    opened = open_source(str(source), split)
    return DocVQADataset(
        opened.rows,
        source_name=opened.name,
        language=language,
        skip_invalid=skip_invalid,
        max_samples=max_samples,
        base_dir=opened.base_dir,
    )


def _check_max_samples(max_samples: int | None) -> None:
    """Reject a ``max_samples`` that is not a positive integer or None.

    Raises:
        ValueError: If it is zero, negative, a bool or not an integer.
    """
    if max_samples is None:
        return
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer, or None to use all records; got {max_samples!r}")


# ---------------------------------------------------------------- record fields


def _record_id(record: Any, row: int) -> str:
    """Return the record's id, or its index when it has none."""
    if isinstance(record, dict) and record.get("id") is not None:
        return str(record["id"])
    return str(row)


def _required(record: dict[str, Any], name: str) -> Any:
    """Return a field that must be present and not null.

    Raises:
        _RecordProblem: If the field is absent or null.
    """
    value = record.get(name)
    if value is None:
        raise _RecordProblem(f"missing field {name!r}")
    return value


def _question(record: dict[str, Any], language: str) -> str:
    """Return the record's question in ``language``.

    Args:
        record: The raw record; ``query`` may be a per-language mapping or a
            string, ``question`` a string.
        language: Key of the ``query`` mapping.

    Returns:
        The question text.

    Raises:
        _RecordProblem: If the question is missing, empty, of the wrong type,
            or not available in ``language``.
    """
    column = next((name for name in QUESTION_COLUMNS if record.get(name) is not None), None)
    if column is None:
        raise _RecordProblem("missing field 'query' (or 'question')")
    value = record[column]
    if isinstance(value, dict):
        value = _question_in_language(value, language)
    if not isinstance(value, str):
        raise _RecordProblem(
            f"{column} must be a string or a mapping of language to string, got {type(value).__name__}"
        )
    if not value.strip():
        raise _RecordProblem(f"{column} is empty; expected a question")
    return value


def _question_in_language(query: dict[str, Any], language: str) -> Any:
    """Pick ``language`` from a per-language query mapping.

    Raises:
        _RecordProblem: If the mapping has no question in ``language``,
            listing the languages it does have.
    """
    if query.get(language) is not None:
        return query[language]
    # Hub structs carry every language key; a null value means "not available".
    available = sorted(key for key, text in query.items() if text is not None)
    have = f"it has: {', '.join(available)}" if available else "it has no question in any language"
    raise _RecordProblem(
        f"query has no question in language {language!r}; {have}. "
        "Choose one of those languages (CLI: data.language=...)"
    )


def _answers(record: dict[str, Any]) -> tuple[str, ...]:
    """Return the record's answers after checking they are usable.

    Raises:
        _RecordProblem: If answers are missing, not a list, empty, or hold a
            non-string or blank entry.
    """
    answers = _required(record, "answers")
    if not isinstance(answers, list):
        raise _RecordProblem(f"answers must be a list of strings, got {type(answers).__name__}")
    if not answers:
        raise _RecordProblem("answers is empty; expected at least one answer string")
    for position, answer in enumerate(answers):
        if not isinstance(answer, str):
            raise _RecordProblem(f"answers[{position}] is {type(answer).__name__}; expected a string")
        if not answer.strip():
            raise _RecordProblem(f"answers[{position}] is an empty string")
    return tuple(answers)


def _load_image(value: Any, base_dir: Path | None, name: str) -> Image.Image:
    """Decode an image field to RGB.

    Args:
        value: ``{"bytes", "path"}`` (bytes win when both are set), a path
            string, or a PIL image.
        base_dir: Folder for relative paths; None leaves them as they are.
        name: How to refer to the record in messages.

    Returns:
        The decoded RGB image.

    Raises:
        ImageLoadError: If the value holds no image or cannot be decoded.
    """
    if isinstance(value, Image.Image):
        return to_rgb(value)
    if isinstance(value, str):
        return load_page(_resolve(value, base_dir))
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return decode_image_bytes(value["bytes"], name)
        if value.get("path") is not None:
            return load_page(_resolve(value["path"], base_dir))
        raise ImageLoadError(f"{name}: image has neither bytes nor a path")
    raise ImageLoadError(
        f"{name}: image must be a path, a {{'bytes', 'path'}} mapping or a PIL image, got {type(value).__name__}"
    )


def _stored_page_key(value: Any, base_dir: Path | None) -> str | None:
    """Identify a record's page by its encoded bytes or path; ``None`` for an in-memory image."""
    if isinstance(value, dict) and value.get("bytes") is not None:
        return "bytes:" + hashlib.sha1(value["bytes"]).hexdigest()
    path = value.get("path") if isinstance(value, dict) else value if isinstance(value, str) else None
    return None if path is None else f"path:{_resolve(path, base_dir)}"


def _pixels_key(image: Image.Image) -> str:
    """Identify an in-memory page by its pixels."""
    return f"pixels:{image.size}:" + hashlib.sha1(image.tobytes()).hexdigest()


def _resolve(path: str, base_dir: Path | None) -> Path:
    """Resolve a possibly relative image path against ``base_dir``."""
    resolved = Path(path).expanduser()
    if base_dir is not None and not resolved.is_absolute():
        return base_dir / resolved
    return resolved
