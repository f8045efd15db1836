"""Tests for doctune.data: every source kind, validation errors, skipping."""

from __future__ import annotations

import json

import datasets
import datasets.config
import huggingface_hub.constants
import pytest
from fixtures import (
    make_docvqa_dataset,
    make_docvqa_jsonl,
    make_docvqa_parquet,
    make_docvqa_parquet_folder,
    make_docvqa_saved_dict,
    make_page_image,
    page_png_bytes,
)

from doctune import data
from doctune.data import DataError, DocVQADataset, Example, PageConversations, load_docvqa
from doctune.images import ImageLoadError, load_page

ONLY_EN = {"de": None, "en": "What is it?", "es": None, "fr": None, "it": None}


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    # load_dataset("parquet") copies data into the cache; keep that out of the home folder.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


@pytest.fixture(scope="module")
def train_parquet(tmp_path_factory):
    return make_docvqa_parquet(tmp_path_factory.mktemp("parquet") / "train.parquet", n=6)


def _load_error(source, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_docvqa(str(source), **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- sources


def test_parquet_file_gives_rgb_examples(train_parquet):
    dataset = load_docvqa(str(train_parquet))
    assert len(dataset) == 6
    example = dataset[1]
    assert isinstance(example, Example)
    assert example.id == "train-1"
    assert example.question == "[en] What is the total of invoice 1?"
    assert example.answers == ["10 EUR", "10"]
    assert example.image.mode == "RGB" and example.image.size == (96, 128)
    assert (dataset.report.total, dataset.report.kept, dataset.report.skipped) == (6, 6, 0)


def test_parquet_drops_unused_columns_and_keeps_images_encoded(train_parquet):
    dataset = load_docvqa(str(train_parquet))
    rows = dataset._rows
    assert rows.column_names == ["id", "image", "query", "answers"]
    # Images stay encoded in the table; each access decodes a fresh page.
    assert isinstance(rows[0]["image"]["bytes"], bytes)
    assert dataset[0].image is not dataset[0].image


def test_language_selection(train_parquet):
    dataset = load_docvqa(str(train_parquet), language="fr")
    assert dataset[2].question == "[fr] What is the total of invoice 2?"


def test_plain_string_query_ignores_language(tmp_path):
    path = make_docvqa_parquet(tmp_path / "plain.parquet", n=2, query_as_string=True)
    dataset = load_docvqa(str(path), language="fr")
    assert dataset[1].question == "What is the total of invoice 1?"


def test_parquet_folder_picks_split_files(tmp_path):
    folder = make_docvqa_parquet_folder(tmp_path / "hub_layout" / "data", splits={"train": 4, "test": 2})
    train = load_docvqa(str(tmp_path / "hub_layout"), split="train")
    test = load_docvqa(str(tmp_path / "hub_layout"), split="test")
    assert [example.id for example in train] == ["train-0", "train-1", "train-2", "train-3"]
    assert [test[i].id for i in range(len(test))] == ["test-0", "test-1"]
    message = _load_error(folder, split="validation")
    assert "no parquet files for split 'validation'" in message
    assert "train" in message and "test" in message


def test_parquet_folder_without_split_names_uses_all_files(tmp_path):
    make_docvqa_parquet(tmp_path / "part-a.parquet", n=2, prefix="a")
    make_docvqa_parquet(tmp_path / "part-b.parquet", n=3, prefix="b")
    assert len(load_docvqa(str(tmp_path), split="train")) == 5


def test_save_to_disk_dataset_dict(tmp_path):
    folder = make_docvqa_saved_dict(tmp_path / "saved", splits={"train": 3, "test": 2})
    assert len(load_docvqa(str(folder), split="train")) == 3
    test = load_docvqa(str(folder), split="test")
    assert test[0].id == "test-0" and test[0].image.mode == "RGB"
    message = _load_error(folder, split="validation")
    assert "no split 'validation'" in message and "available splits: train, test" in message


def test_save_to_disk_single_dataset(tmp_path):
    make_docvqa_dataset(2).save_to_disk(str(tmp_path / "single"))
    assert len(load_docvqa(str(tmp_path / "single"))) == 2


def test_jsonl_relative_image_paths(tmp_path):
    path = make_docvqa_jsonl(tmp_path / "jsonl" / "train.jsonl", n=3)
    dataset = load_docvqa(str(path), language="it")
    assert len(dataset) == 3
    assert dataset[2].id == "doc-2" and dataset[2].question.startswith("[it]")
    assert dataset[2].image.size == (96, 128)
    # The folder form picks <split>.jsonl.
    assert len(load_docvqa(str(tmp_path / "jsonl"), split="train")) == 3


def test_jsonl_split_subfolder_and_question_field(tmp_path):
    rows = [{"image": "../images/page_0.png", "question": "Total?", "answers": ["0 EUR"]}]
    make_docvqa_jsonl(tmp_path / "test" / "data.jsonl", n=1, image_dir="../images", rows=rows)
    dataset = load_docvqa(str(tmp_path), split="test")
    assert dataset[0].question == "Total?"
    assert dataset[0].id == "0"  # no id field: the record index stands in


def test_folder_with_a_lone_data_jsonl_is_read_for_any_split(tmp_path):
    make_docvqa_jsonl(tmp_path / "docs" / "data.jsonl", n=2)
    for split in ("train", "test"):
        assert [x.id for x in load_docvqa(str(tmp_path / "docs"), split=split)] == ["doc-0", "doc-1"]


def test_split_file_wins_over_a_lone_data_jsonl(tmp_path):
    make_docvqa_jsonl(tmp_path / "data.jsonl", n=2)
    make_docvqa_jsonl(tmp_path / "test.jsonl", n=1)
    assert len(load_docvqa(str(tmp_path), split="test")) == 1


def test_jsonl_absolute_image_path(tmp_path):
    image = tmp_path / "pages"
    make_docvqa_jsonl(tmp_path / "unused.jsonl", n=1, image_dir="pages")
    rows = [{"id": "abs", "image": str(image / "page_0.png"), "query": "Q?", "answers": ["A"]}]
    path = tmp_path / "elsewhere" / "data.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    assert load_docvqa(str(path))[0].image.mode == "RGB"


def test_invalid_jsonl_line_names_file_and_line(tmp_path):
    path = make_docvqa_jsonl(tmp_path / "train.jsonl", n=1)
    path.write_text(path.read_text() + "{not json\n", encoding="utf-8")
    assert f"{path} line 2: not valid JSON" in _load_error(path)


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    assert "does not exist" in _load_error(tmp_path / "nope.parquet")
    assert "does not exist" in _load_error("data/train.jsonl")
    assert "does not exist" in _load_error("./somewhere")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    assert "Unsupported data file" in _load_error(path)


def test_hub_id_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Both libraries read the variable at import time, so set their flags too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as info:
        load_docvqa("nielsr/docvqa_1200_examples", split="train")
    message = str(info.value)
    assert "hub dataset 'nielsr/docvqa_1200_examples' (split 'train')" in message
    assert "HF_HUB_OFFLINE" in message and "local copy" in message
    assert isinstance(info.value.__cause__, OSError)


def test_missing_column_lists_what_the_source_has(tmp_path):
    dataset = make_docvqa_dataset(2).remove_columns("answers")
    dataset.to_parquet(str(tmp_path / "no_answers.parquet"))
    message = _load_error(tmp_path / "no_answers.parquet")
    assert "lacks column(s) answers" in message and "it has: id, image, query" in message


# ---------------------------------------------------------------- validation


def test_missing_field_in_parquet(tmp_path):
    path = make_docvqa_parquet(tmp_path / "train.parquet", n=3, overrides={1: {"image": None}})
    message = _load_error(path)
    assert str(path) in message
    assert "record 1 (id 'train-1'): missing field 'image'" in message
    assert "skip_invalid=True" in message and "data.skip_invalid=true" in message


def test_missing_field_in_jsonl(tmp_path):
    rows = [{"id": "x", "image": "images/page_0.png", "query": {"en": "Q?"}}]
    path = make_docvqa_jsonl(tmp_path / "train.jsonl", n=1, rows=rows)
    assert "record 0 (id 'x'): missing field 'answers'" in _load_error(path)


def test_empty_answers(tmp_path):
    path = make_docvqa_parquet(tmp_path / "train.parquet", n=3, overrides={2: {"answers": []}})
    message = _load_error(path)
    assert "record 2 (id 'train-2'): answers is empty" in message and "skip_invalid" in message


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ("42", "answers must be a list of strings, got str"),
        (["ok", 7], "answers[1] is int"),
        ([" "], "answers[0] is an empty string"),
    ],
)
def test_answers_must_be_strings(tmp_path, answers, problem):
    rows = [{"id": "x", "image": "images/page_0.png", "query": "Q?", "answers": answers}]
    path = make_docvqa_jsonl(tmp_path / "train.jsonl", n=1, rows=rows)
    assert problem in _load_error(path)


def test_empty_query(tmp_path):
    query = {"de": "", "en": "  ", "es": "", "fr": "", "it": ""}
    path = make_docvqa_parquet(tmp_path / "train.parquet", n=2, overrides={0: {"query": query}})
    assert "record 0 (id 'train-0'): query is empty" in _load_error(path)


def test_unreadable_image_bytes(tmp_path):
    bad = {"bytes": b"definitely not a png", "path": None}
    path = make_docvqa_parquet(tmp_path / "train.parquet", n=3, overrides={1: {"image": bad}})
    with pytest.raises(DataError) as info:
        load_docvqa(str(path))
    assert "record 1 (id 'train-1'): unreadable image" in str(info.value)
    assert "not a recognised image format" in str(info.value)
    assert isinstance(info.value.__cause__.__cause__, ImageLoadError)


def test_missing_image_file_in_jsonl(tmp_path):
    rows = [{"id": "gone", "image": "images/missing.png", "query": "Q?", "answers": ["A"]}]
    path = make_docvqa_jsonl(tmp_path / "train.jsonl", n=1, rows=rows)
    message = _load_error(path)
    assert "record 0 (id 'gone'): unreadable image" in message and "missing.png: file not found" in message


def test_missing_language_lists_available_ones(tmp_path):
    path = make_docvqa_parquet(tmp_path / "train.parquet", n=2, overrides={1: {"query": ONLY_EN}})
    message = _load_error(path, language="fr")
    assert "record 1 (id 'train-1')" in message
    assert "no question in language 'fr'; it has: en" in message


def test_skip_invalid_counts_every_skipped_record(tmp_path):
    overrides = {
        1: {"answers": []},
        3: {"image": {"bytes": b"junk", "path": None}},
        4: {"query": ONLY_EN},
    }
    path = make_docvqa_parquet(tmp_path / "train.parquet", n=6, overrides=overrides)
    dataset = load_docvqa(str(path), language="fr", skip_invalid=True)
    report = dataset.report
    assert (report.total, report.kept, report.skipped) == (6, 3, 3)
    assert [line.split(":")[0] for line in report.problems] == [
        "record 1 (id 'train-1')",
        "record 3 (id 'train-3')",
        "record 4 (id 'train-4')",
    ]
    assert [dataset[i].id for i in range(len(dataset))] == ["train-0", "train-2", "train-5"]


def test_all_records_invalid(tmp_path):
    path = make_docvqa_parquet(tmp_path / "train.parquet", n=2, overrides={0: {"answers": []}, 1: {"answers": []}})
    message = _load_error(path, skip_invalid=True)
    assert "No valid records" in message and "record 0 (id 'train-0')" in message


def test_max_samples_validates_only_what_it_keeps(tmp_path):
    overrides = {1: {"answers": []}, 4: {"answers": []}}
    path = make_docvqa_parquet(tmp_path / "train.parquet", n=6, overrides=overrides)
    dataset = load_docvqa(str(path), skip_invalid=True, max_samples=3)
    assert [dataset[i].id for i in range(3)] == ["train-0", "train-2", "train-3"]
    assert (dataset.report.total, dataset.report.kept, dataset.report.skipped) == (4, 3, 1)
    # Without skip_invalid, bad record 1 would raise; max_samples=1 stops after record 0.
    assert len(load_docvqa(str(path), max_samples=1)) == 1


def test_max_samples_must_be_positive(train_parquet):
    with pytest.raises(ValueError, match="max_samples must be a positive integer"):
        load_docvqa(str(train_parquet), max_samples=0)


def test_dataset_from_rows_accepts_pil_images(tmp_path):
    rows = [{"id": "pil", "image": make_docvqa_dataset(1)[0]["image"].convert("L"), "query": "Q?", "answers": ["A"]}]
    dataset = DocVQADataset(rows, source_name="in-memory rows")
    assert dataset[0].image.mode == "RGB"
    with pytest.raises(IndexError):
        dataset[1]


def _rows_about_pages(questions_per_page: list[int], image) -> list[dict]:
    """Records whose ``image`` is produced by ``image(page)``; page p has questions_per_page[p] questions."""
    return [{"id": f"p{page}-q{q}", "image": image(page), "query": f"Q{q} about {page}?", "answers": [f"A{page}.{q}"]}
            for page, count in enumerate(questions_per_page) for q in range(count)]


@pytest.mark.parametrize("image", [
    make_page_image,  # PIL images: grouped by pixels
    lambda page: {"bytes": page_png_bytes(page), "path": None},  # encoded bytes, as hub datasets give
], ids=["pil", "bytes"])
def test_page_conversations_deal_each_pages_questions_into_even_samples(image):
    dataset = DocVQADataset(_rows_about_pages([7, 2, 1], image), source_name="pages")
    samples = PageConversations(dataset, per_sample=3, seed=5)
    sizes = sorted(len(sample) for sample in samples.samples)
    assert sizes == [1, 2, 2, 2, 3]  # page 0's 7 questions as 3+2+2, page 1's 2 together, page 2's 1 alone
    assert sorted(i for sample in samples.samples for i in sample) == list(range(10))
    for k in range(len(samples)):
        sample = samples[k]
        assert len({example.id.split("-")[0] for example in sample}) == 1
        assert all(example.image is sample[0].image for example in sample)  # decoded once
    assert PageConversations(dataset, per_sample=3, seed=5).samples == samples.samples
    assert PageConversations(dataset, per_sample=3, seed=6).samples != samples.samples


def test_page_conversations_of_one_question_keep_the_dataset_order(tmp_path):
    dataset = load_docvqa(str(make_docvqa_jsonl(tmp_path / "d.jsonl", n=4)))
    samples = PageConversations(dataset, per_sample=1)
    assert samples.samples == [[0], [1], [2], [3]]
    assert [sample[0].id for sample in (samples[i] for i in range(4))] == [dataset[i].id for i in range(4)]


def test_page_key_tells_pages_apart_by_path(tmp_path):
    rows = [{"id": str(i), "image": f"images/page_{i % 2}.png", "query": "Q?", "answers": ["A"]} for i in range(4)]
    dataset = load_docvqa(str(make_docvqa_jsonl(tmp_path / "d.jsonl", n=2, rows=rows)))
    assert [dataset.page_key(i) for i in range(4)] == [dataset.page_key(0), dataset.page_key(1)] * 2
    assert dataset.page_key(0) != dataset.page_key(1)
    assert [len(s) for s in PageConversations(dataset, per_sample=4).samples] == [2, 2]


def test_validation_decodes_each_page_once_however_many_questions_it_has(tmp_path, monkeypatch):
    rows = [{"id": str(i), "image": f"images/page_{i % 2}.png", "query": "Q?", "answers": ["A"]} for i in range(6)]
    source = make_docvqa_jsonl(tmp_path / "d.jsonl", n=2, rows=rows)
    decoded = []
    monkeypatch.setattr(data, "load_page", lambda path: decoded.append(path.name) or load_page(path))
    dataset = load_docvqa(str(source))
    assert len(dataset) == 6
    assert sorted(decoded) == ["page_0.png", "page_1.png"]


def test_an_unreadable_page_is_reported_for_every_question_about_it(tmp_path):
    rows = [{"id": str(i), "image": f"images/page_{i % 2}.png", "query": "Q?", "answers": ["A"]} for i in range(4)]
    source = make_docvqa_jsonl(tmp_path / "d.jsonl", n=2, rows=rows)
    (tmp_path / "images" / "page_1.png").write_bytes(b"not a png")
    dataset = load_docvqa(str(source), skip_invalid=True)
    assert [dataset[i].id for i in range(len(dataset))] == ["0", "2"]
    assert dataset.report.skipped == 2
    assert all("page_1.png" in problem for problem in dataset.report.problems)
