"""Batched answers: questions about one page share its prompt prefix and answer as if asked alone."""

import logging

import pytest
import torch

from doctune.data import load_docvqa
from doctune.evaluate import _warn_of_answers_past_the_limit, evaluate
from doctune import inference
from doctune.inference import load_predictor
from doctune.prompt import collate_for_generation
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


def test_rows_about_one_page_run_its_prefix_once_and_answer_as_if_asked_alone(predictor, two_pages, monkeypatch):
    dataset, a, b = two_pages
    solo = {i: predictor.answer([dataset[i].image], [dataset[i].question])[0] for i in (a, b)}
    assert solo[a] != solo[b]  # the two pages' values differ, so a page's cache in the wrong row would show
    encoded, text_inputs = [], []
    model = predictor.model.model
    encoder, text_model = model.get_image_features, model.text_model.forward
    monkeypatch.setattr(model, "get_image_features", lambda pixel_values, *args, **kwargs:
                        encoded.append(len(pixel_values)) or encoder(pixel_values, *args, **kwargs))
    monkeypatch.setattr(model.text_model, "forward", lambda *args, inputs_embeds, **kwargs:
                        text_inputs.append(inputs_embeds.shape[:2]) or text_model(*args, inputs_embeds=inputs_embeds, **kwargs))
    order = [a, b, a, b, b]
    examples = dataset.examples(order)  # one image object per page
    answers = predictor.answer([e.image for e in examples], [e.question for e in examples])
    assert answers == [solo[i] for i in order]
    assert encoded == [2]
    image_tokens = predictor.model.config.perceiver_config.resampler_n_latents
    prefix, first_step = text_inputs[0], text_inputs[1]
    assert prefix[0] == 2 and prefix[1] > image_tokens  # the prefix, image included, once per page
    assert first_step[0] == 5 and first_step[1] < image_tokens  # then each row's question only

    copies = [e.image.copy() for e in examples]  # the same pixels, five objects: nothing is shared
    text_inputs.clear()
    assert predictor.answer(copies, [e.question for e in examples]) == answers
    assert encoded == [2, 5]
    assert text_inputs[0][0] == 5 and text_inputs[0][1] > image_tokens


def test_beam_search_shares_a_page_prefix_across_every_beam_of_its_rows(predictor, two_pages, monkeypatch):
    dataset, a, b = two_pages
    monkeypatch.setattr(predictor, "num_beams", 3)
    solo = {i: predictor.answer([dataset[i].image], [dataset[i].question])[0] for i in (a, b)}
    order = [b, a, a, b]
    examples = dataset.examples(order)  # one image object per page: the prefix runs once per page
    assert predictor._prefill_pages_once(*_generation_batch(predictor, examples)) is not None
    assert predictor.answer([e.image for e in examples], [e.question for e in examples]) == [solo[i] for i in order]


def test_a_predictor_needs_at_least_one_beam(predictor):
    with pytest.raises(ValueError, match="num_beams"):
        inference.Predictor(predictor.model, predictor.processor, num_beams=0)


def test_a_prefix_without_every_image_token_falls_back_to_plain_generation(predictor, two_pages, monkeypatch):
    dataset, a, b = two_pages
    examples = dataset.examples([a, b, a])
    shared = predictor.answer([e.image for e in examples], [e.question for e in examples])
    monkeypatch.setattr(inference, "_common_prefix_length", lambda prompts: 1)  # cuts before the image
    assert predictor._prefill_pages_once(*_generation_batch(predictor, examples)) is None
    assert predictor.answer([e.image for e in examples], [e.question for e in examples]) == shared


def _generation_batch(predictor, examples):
    batch = collate_for_generation(predictor.processor, [e.image for e in examples], [e.question for e in examples])
    return batch, [e.image for e in examples]


def test_common_prefix_length_stops_at_the_first_difference_and_leaves_a_last_token():
    rows = [torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 5, 6, 7]), torch.tensor([1, 2, 3])]
    assert inference._common_prefix_length(rows) == 2
    same = [torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3])]
    assert inference._common_prefix_length(same) == 2


def test_evaluation_warns_of_questions_whose_every_answer_is_past_the_token_limit(predictor, two_pages, monkeypatch,
                                                                                    caplog):
    dataset, _, _ = two_pages
    monkeypatch.setattr(predictor, "max_new_tokens", 6)
    rows = [{"answers": ["12345"]}, {"answers": ["123456", "1234567890"]}, {"answers": ["12345678"]}]
    with caplog.at_level(logging.WARNING, logger="doctune.evaluate"):
        _warn_of_answers_past_the_limit(predictor, rows)  # a character a token, after the template's space
    assert "2 of 3 questions have no gold answer that fits in max_new_tokens=6 (the longest needs 9 tokens)" in caplog.text
    caplog.clear()
    monkeypatch.setattr(predictor, "max_new_tokens", 2)
    with caplog.at_level(logging.WARNING, logger="doctune.evaluate"):
        _, scored = evaluate(predictor, dataset, batch_size=16, progress=False)
    assert f"{len(scored)} of {len(scored)} questions have no gold answer" in caplog.text  # receipts' answers are longer
