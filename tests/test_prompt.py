"""The prompt template and the answer-only labels."""

import pytest
import torch
from PIL import Image

from doctune.models import load_processor
from doctune.prompt import (
    IGNORE_INDEX,
    answer_labels,
    collate_for_generation,
    collate_for_training,
    render_prompt,
)

X = IGNORE_INDEX
EOU = 9


def test_answer_labels_keep_answer_and_first_end_of_utterance_only():
    # row 0: prompt of 4 tokens, answer 5 6, EOU, newline 3, padding 0 0
    # row 1: prompt of 3 tokens, answer 7 7 7, EOU, newline 3, no padding
    input_ids = torch.tensor([[1, 2, 2, 4, 5, 6, EOU, 3, 0, 0],
                              [1, 2, 4, 7, 7, 7, EOU, 3, 0, 0]])
    expected = torch.tensor([[X, X, X, X, 5, 6, EOU, X, X, X],
                             [X, X, X, 7, 7, 7, EOU, X, X, X]])
    assert torch.equal(answer_labels(input_ids, [[4], [3]], EOU), expected)


def test_answer_labels_ignore_an_end_of_utterance_inside_the_prompt():
    # The user turn closes with its own EOU; only the one after the prompt ends the answer.
    input_ids = torch.tensor([[1, 2, EOU, 3, 4, 5, EOU, 3]])
    expected = torch.tensor([[X, X, X, X, X, 5, EOU, X]])
    assert torch.equal(answer_labels(input_ids, [[5]], EOU), expected)


def test_answer_labels_cover_every_answer_of_a_conversation():
    # prompt 1 2 4 | answer 5 EOU | newline 3, question 6 EOU 3 4 | answer 7 7 EOU | 3
    input_ids = torch.tensor([[1, 2, 4, 5, EOU, 3, 6, EOU, 3, 4, 7, 7, EOU, 3]])
    expected = torch.tensor([[X, X, X, 5, EOU, X, X, X, X, X, 7, 7, EOU, X]])
    assert torch.equal(answer_labels(input_ids, [[3, 10]], EOU), expected)


def test_answer_labels_reject_a_truncated_answer():
    with pytest.raises(ValueError, match="row 0"):
        answer_labels(torch.tensor([[1, 2, 5, 6]]), [[2]], EOU)


@pytest.fixture(scope="module")
def processor():
    return load_processor("doctune-tiny")


def test_prompt_is_the_idefics2_chat_template(processor):
    assert render_prompt(processor, "What is the total?") == (
        "User:<image>What is the total?<end_of_utterance>\nAssistant:"
    )


def test_training_batch_labels_only_the_answer(processor):
    images = [Image.new("RGB", (60, 80), "white"), Image.new("RGB", (80, 60), "white")]
    batch = collate_for_training(processor, images, [[("Total?", "42.00")], [("What is the date?", "1 May")]])
    decoded = [processor.tokenizer.decode(ids[labels != X]) for ids, labels in zip(batch["input_ids"], batch["labels"])]
    assert decoded == [" 42.00<end_of_utterance>", " 1 May<end_of_utterance>"]
    # right padding: the shorter row ends in padding, which is masked
    assert batch["attention_mask"][0, -1] == 0 and batch["labels"][0, -1] == X


def test_generation_batch_is_left_padded(processor):
    images = [Image.new("RGB", (60, 80), "white")] * 2
    batch = collate_for_generation(processor, images, ["Total?", "What is the date?"])
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].tolist() == [1, 1]
    tail = processor.tokenizer.decode(batch["input_ids"][0, -10:])
    assert tail.endswith("Assistant:")


def test_a_conversation_labels_each_answer_and_starts_as_the_one_question_text(processor):
    page = Image.new("RGB", (60, 80), "white")
    turns = [("Total?", "42.00"), ("What is the date?", "1 May"), ("Who?", "Ann")]
    batch = collate_for_training(processor, [page, page], [turns, turns[:1]])
    ids, labels = batch["input_ids"], batch["labels"]
    assert processor.tokenizer.decode(ids[0][labels[0] != X]) == (
        " 42.00<end_of_utterance> 1 May<end_of_utterance> Ann<end_of_utterance>")
    # the page's image tokens appear once, in the first turn
    assert int((ids[0] == processor.tokenizer.convert_tokens_to_ids("<image>")).sum()) == int(
        (ids[1] == processor.tokenizer.convert_tokens_to_ids("<image>")).sum())
    # the first turn is token for token the one-question conversation, labels included
    single = int(batch["attention_mask"][1].sum())
    assert torch.equal(ids[0, :single], ids[1, :single]) and torch.equal(labels[0, :single], labels[1, :single])
    later_questions = processor.tokenizer.decode(ids[0, single:])
    assert "User: What is the date?" in later_questions and "User: Who?" in later_questions
