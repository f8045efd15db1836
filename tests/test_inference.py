"""Batched answers: questions about one page share its encoding and answer as if asked alone."""

import pytest

from doctune.data import load_docvqa
from doctune.inference import load_predictor
from doctune.synth import write_dataset


@pytest.fixture(scope="module")
def predictor():
    return load_predictor("doctune-tiny", max_new_tokens=12, precision="fp32")


@pytest.fixture(scope="module")
def two_pages(tmp_path_factory):
    """Receipts, and one question asked about two of them: its index on each."""
    dataset = load_docvqa(str(write_dataset(tmp_path_factory.mktemp("pages"), ["receipt"], 6, seed=11)))
    by_page: dict[str, dict[str, int]] = {}
    for index in range(len(dataset)):
        by_page.setdefault(dataset.page_key(index), {})[dataset[index].question] = index
    first, *others = by_page.values()
    second = next(page for page in others if page.keys() & first.keys())
    question = min(first.keys() & second.keys())
    return dataset, first[question], second[question]


def test_rows_about_one_page_encode_it_once_and_answer_as_if_asked_alone(predictor, two_pages, monkeypatch):
    dataset, a, b = two_pages
    solo = {i: predictor.answer([dataset[i].image], [dataset[i].question])[0] for i in (a, b)}
    assert solo[a] != solo[b]  # the two pages' values differ, so a page's features in the wrong row would show
    encoded = []
    encoder = predictor.model.model.get_image_features
    monkeypatch.setattr(predictor.model.model, "get_image_features",
                        lambda pixel_values, *args, **kwargs: encoded.append(len(pixel_values)) or
                        encoder(pixel_values, *args, **kwargs))
    order = [a, b, a, b, b]
    examples = dataset.examples(order)  # one image object per page
    answers = predictor.answer([e.image for e in examples], [e.question for e in examples])
    assert answers == [solo[i] for i in order]
    assert encoded == [2]
    copies = [e.image.copy() for e in examples]  # the same pixels, five objects: nothing is shared
    assert predictor.answer(copies, [e.question for e in examples]) == answers
    assert encoded == [2, 5]
