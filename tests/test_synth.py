"""Tests for the synthetic document generator (small and fast)."""

from __future__ import annotations

import io
import json
import random
import statistics
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from doctune.synth import KINDS, generate_document, write_dataset
from doctune.synth.fonts import font_path, load_font
from doctune.synth.questions import count_runs, row_qa
from doctune.synth.style import BODY_SIZES

SEEDS = (0, 1, 2)


def _png(doc) -> bytes:
    buffer = io.BytesIO()
    doc.image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def docs():
    """A few documents of every kind, rendered once for the whole module."""
    return {(kind, seed): generate_document(kind, seed) for kind in KINDS for seed in SEEDS}


def test_all_five_kinds_exist():
    assert set(KINDS) == {"invoice", "receipt", "purchase_order", "form", "bank_statement"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders(docs, kind):
    doc = docs[(kind, 0)]
    assert doc.kind == kind
    assert doc.image.mode == "RGB" and doc.image.width == 448
    assert 1.28 <= doc.image.height / doc.image.width <= 1.42
    assert 3 <= len(doc.qa) <= 8
    assert len(doc.words) == len(doc.bounding_boxes) > 0
    assert 8 <= len(doc.lines) <= 26


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_identical_bytes_and_qa(docs, kind):
    again = generate_document(kind, 0)
    assert _png(again) == _png(docs[(kind, 0)])
    assert again.qa == docs[(kind, 0)].qa


def test_noisy_documents_are_deterministic_too():
    first, second = (
        generate_document("invoice", 7, noise=0.8),
        generate_document("invoice", 7, noise=0.8),
    )
    clean = generate_document("invoice", 7)
    assert _png(first) == _png(second)
    assert _png(first) != _png(clean)
    assert first.image.size == clean.image.size and first.words == clean.words


@pytest.mark.parametrize("kind", KINDS)
def test_different_seeds_give_different_values(docs, kind):
    assert docs[(kind, 0)].fields != docs[(kind, 1)].fields
    assert docs[(kind, 0)].qa != docs[(kind, 1)].qa


def test_answers_are_unambiguous_word_runs(docs):
    for (kind, seed), doc in docs.items():
        for question, answer in doc.qa:
            assert answer and answer == " ".join(answer.split()), (kind, seed, answer)
            # Exactly one occurrence: present on the page and never ambiguous.
            assert count_runs(doc.words, answer) == 1, (kind, seed, question, answer)


def test_fields_shown_are_on_the_page(docs):
    for doc in docs.values():
        answers = {answer for _, answer in doc.qa}
        assert answers <= set(doc.fields.values())


@pytest.mark.parametrize("kind", ["invoice", "purchase_order", "receipt", "bank_statement"])
def test_row_questions_ask_every_cell_on_its_row(docs, kind):
    for seed in SEEDS:
        doc = docs[(kind, seed)]
        qa = row_qa(doc, random.Random(0))
        rows = {k for k in doc.fields if k.startswith(("item_", "txn_"))}
        # Every row cell with a unique value is asked about; make_qa keeps at most three.
        unique = {k for k in rows if count_runs(doc.words, doc.fields[k]) == 1}
        assert len(qa) == len(unique) >= 3, (kind, seed)
        for question, answer in qa:
            assert count_runs(doc.words, answer) == 1, (kind, seed, answer)
            # The row's name is in the question and on the same printed line as the answer.
            assert any(
                name in question and name in line["text"] and answer in line["text"]
                for name in set(doc.contexts.values())
                for line in doc.lines
            ), (kind, seed, question, answer)


def test_boxes_lie_within_the_page(docs):
    for doc in docs.values():
        width, height = doc.image.size
        for x0, y0, x1, y1 in doc.bounding_boxes:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        for line in doc.lines:
            x0, y0, x1, y1 = line["box"]
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def test_lines_partition_the_words(docs):
    for doc in docs.values():
        assert " ".join(line["text"] for line in doc.lines) == " ".join(doc.words)


def test_text_is_legible_size(docs):
    for doc in docs.values():
        heights = [y1 - y0 for _, y0, _, y1 in doc.bounding_boxes]
        assert statistics.median(heights) >= 10
        # Word boxes span cap top to descender (~0.97 em): >= 12 px means no
        # font below ~12.5 px, whose capitals stay ~6 px tall even at 384 px.
        assert min(heights) >= 12
    _, top, _, bottom = load_font("sans", round(min(BODY_SIZES))).getbbox("H")
    assert (bottom - top) * 384 / (448 * 1.35) >= 7.8  # body text capitals at 384 px


def test_words_are_dark_on_white(docs):
    doc = docs[("invoice", 0)]
    x0, y0, x1, y1 = (round(v) for v in doc.bounding_boxes[0])
    crop = np.asarray(doc.image.convert("L").crop((x0, y0, x1, y1)))
    assert crop.min() < 90
    assert doc.image.convert("L").getpixel((1, 1)) == 255


def test_other_widths_scale_the_page():
    doc = generate_document("receipt", 3, width=320)
    assert doc.image.width == 320
    assert all(x1 <= 320 for _, _, x1, _ in doc.bounding_boxes)


@pytest.mark.parametrize("kwargs", [{"kind": "memo"}, {"noise": 1.5}, {"width": 50}])
def test_invalid_arguments_raise(kwargs):
    args = {"kind": "invoice", "seed": 0, **kwargs}
    with pytest.raises(ValueError):
        generate_document(**args)


def test_fonts_come_from_matplotlib():
    assert (
        font_path("serif", bold=True).parent == Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    )
    assert load_font("mono", 17) is load_font("mono", 17)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_write_dataset_schema(tmp_path):
    kinds = ["invoice", "form", "bank_statement"]
    path = write_dataset(tmp_path / "set", kinds, num_docs=4, seed=5, width=320, progress=False)
    rows = _rows(path)
    assert path.name == "data.jsonl" and len(rows) >= 4 * 3
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        assert set(row) == {
            "id",
            "image",
            "query",
            "answers",
            "answer",
            "kind",
            "words",
            "bounding_boxes",
        }
        assert (path.parent / row["image"]).is_file()
        assert row["image"].startswith("images/") and row["kind"] in kinds
        assert isinstance(row["query"]["en"], str) and row["answers"] == [row["answer"]]
        assert len(row["words"]) == len(row["bounding_boxes"])
        assert count_runs(row["words"], row["answer"]) == 1
    assert {row["image"] for row in rows} == {f"images/{kinds[i % 3]}-5-{i}.png" for i in range(4)}
    assert not list(path.parent.rglob("*.tmp"))


def test_write_dataset_is_reproducible_and_seeded(tmp_path):
    first = write_dataset(tmp_path / "a", ["receipt"], 2, seed=1, width=320, progress=False)
    again = write_dataset(tmp_path / "b", ["receipt"], 2, seed=1, width=320, progress=False)
    other = write_dataset(tmp_path / "c", ["receipt"], 2, seed=2, width=320, progress=False)
    assert first.read_bytes() == again.read_bytes()
    image = "images/receipt-1-0.png"
    assert (first.parent / image).read_bytes() == (again.parent / image).read_bytes()
    assert {r["answer"] for r in _rows(first)} != {r["answer"] for r in _rows(other)}


def test_write_dataset_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError):
        write_dataset(tmp_path, ["memo"], 1, seed=0, progress=False)


def test_worker_processes_write_what_one_process_writes(tmp_path):
    kinds = ["receipt", "form"]
    alone = write_dataset(tmp_path / "one", kinds, 5, seed=3, width=320, progress=False, workers=1)
    shared = write_dataset(tmp_path / "two", kinds, 5, seed=3, width=320, progress=False, workers=2)
    assert alone.read_bytes() == shared.read_bytes()
    images = sorted(p.name for p in (alone.parent / "images").iterdir())
    assert len(images) == 5 and images == sorted(p.name for p in (shared.parent / "images").iterdir())
    for name in images:
        assert (alone.parent / "images" / name).read_bytes() == (shared.parent / "images" / name).read_bytes()


def test_a_failing_worker_stops_the_set_and_leaves_no_data_file(tmp_path, monkeypatch):
    from doctune.synth import writer

    real = writer.generate_document

    def fail_on_fourth(kind, seed, **kwargs):
        if seed == writer.document_seed(3, 3):
            raise RuntimeError("cannot render document 3")
        return real(kind, seed, **kwargs)

    monkeypatch.setattr(writer, "generate_document", fail_on_fourth)  # forked workers inherit it
    with pytest.raises(RuntimeError, match="document 3"):
        write_dataset(tmp_path / "set", ["receipt"], 6, seed=3, width=320, progress=False, workers=2)
    assert not (tmp_path / "set" / "data.jsonl").exists()
    assert not list((tmp_path / "set").rglob("*.tmp"))


def test_write_dataset_needs_a_worker(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        write_dataset(tmp_path / "set", ["receipt"], 2, seed=0, progress=False, workers=0)
    assert not (tmp_path / "set").exists()
