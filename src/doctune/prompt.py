"""The prompt and the labels: the only place that decides what the model sees and learns.

Training, evaluation and prediction all render questions through :func:`render_prompt`, so the
text the model answers at serving time is byte-for-byte the text it was trained on. The loss
covers the answers and their end-of-utterance tokens only (:func:`answer_labels`). A training
sample may hold several questions about one page as a multi-turn chat (the page shown once);
its first turn is exactly the one-question text.
"""

from collections.abc import Sequence

import torch
from PIL import Image

IGNORE_INDEX = -100  # label value that torch's cross-entropy skips
END_OF_UTTERANCE = "<end_of_utterance>"


def build_messages(question: str, answer: str | None = None) -> list[dict]:
    """A one-turn chat: the page image and the question, then the answer if given."""
    return _chat([(question, answer)])


def _chat(turns: Sequence[tuple[str, str | None]]) -> list[dict]:
    """Chat messages about one page: the image opens the first user turn; a ``None`` answer is left out."""
    messages = []
    for position, (question, answer) in enumerate(turns):
        content = [{"type": "image"}] if position == 0 else []
        messages.append({"role": "user", "content": content + [{"type": "text", "text": question}]})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def render_prompt(processor, question: str) -> str:
    """Chat-template text for a question, ending where the model starts its answer."""
    return processor.apply_chat_template(build_messages(question), add_generation_prompt=True)


def render_conversation(processor, turns: Sequence[tuple[str, str]]) -> str:
    """Chat-template text of (question, answer) turns about one page, as used for training.

    One turn renders exactly as :func:`render_prompt` followed by the answer; later turns
    carry no image of their own (the page is shown once, at the start).
    """
    return processor.apply_chat_template(_chat(turns))


def _turn_prompts(processor, turns: Sequence[tuple[str, str]]) -> list[str]:
    """For each turn, the conversation text up to where that turn's answer starts."""
    return [processor.apply_chat_template(_chat([*turns[:t], (turns[t][0], None)]), add_generation_prompt=True)
            for t in range(len(turns))]


def answer_token_counts(processor, answers: Sequence[str]) -> list[int]:
    """How many tokens each answer takes where the model generates it: from the end of
    :func:`render_prompt`'s text up to its end-of-utterance, which is not counted."""
    tokenizer = processor.tokenizer
    eou_id = tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    start = len(tokenizer(render_prompt(processor, ""), add_special_tokens=False).input_ids)
    rendered = tokenizer([render_conversation(processor, [("", answer)]) for answer in answers],
                         add_special_tokens=False).input_ids
    return [ids.index(eou_id, start) - start for ids in rendered]


def answer_labels(input_ids: torch.Tensor, answer_starts: Sequence[Sequence[int]], eou_id: int) -> torch.Tensor:
    """Labels that train on the answers and their closing end-of-utterance tokens only.

    Args:
        input_ids: ``[batch, seq]`` right-padded token ids of conversations.
        answer_starts: per row, the position where each answer starts (the token count of the
            conversation up to and including that turn's ``Assistant:``).
        eou_id: id of the ``<end_of_utterance>`` token.

    Returns:
        ``[batch, seq]`` labels: ``input_ids`` from each answer start through the first
        end-of-utterance after it, ``IGNORE_INDEX`` elsewhere (image, questions, the chat
        template's words, trailing newlines and padding).

    Raises:
        ValueError: an answer has no end-of-utterance after its start (it was truncated).
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, starts in enumerate(answer_starts):
        for start in starts:
            closing = (input_ids[row, start:] == eou_id).nonzero()
            if len(closing) == 0:
                raise ValueError(f"row {row}: no {END_OF_UTTERANCE} after the answer starting at token {start}; "
                                 "was the text truncated?")
            end = start + int(closing[0]) + 1
            labels[row, start:end] = input_ids[row, start:end]
    return labels


def _answer_starts(processor, conversations: Sequence[Sequence[tuple[str, str]]], full_ids: torch.Tensor) -> list[list[int]]:
    """Token positions where each turn's answer starts, checked against the full conversations."""
    prompts = [_turn_prompts(processor, turns) for turns in conversations]
    prompt_ids = processor(text=[text for row in prompts for text in row])["input_ids"]
    starts, flat = [], iter(prompt_ids)
    for row, row_prompts in enumerate(prompts):
        starts.append([])
        for text in row_prompts:
            ids = list(next(flat))
            if full_ids[row, : len(ids)].tolist() != ids:
                raise ValueError(
                    "the tokenizer splits the prompt differently when the answer follows it; "
                    f"cannot tell answer tokens apart (row {row}: {text!r})"
                )
            starts[-1].append(len(ids))
    return starts


def collate_for_training(
    processor, images: list[Image.Image], conversations: Sequence[Sequence[tuple[str, str]]]
) -> dict[str, torch.Tensor]:
    """Batch conversations with right padding and answer-only labels.

    Args:
        processor: the model's processor.
        images: one page per row.
        conversations: per row, the (question, answer) turns about that page; usually one.

    Returns:
        The processor's tensors (``input_ids``, ``attention_mask``, ``pixel_values``,
        ``pixel_attention_mask``) plus ``labels``.
    """
    texts = [render_conversation(processor, turns) for turns in conversations]
    batch = processor(
        text=texts, images=[[image] for image in images], padding=True, padding_side="right", return_tensors="pt"
    )
    starts = _answer_starts(processor, conversations, batch["input_ids"])
    eou_id = processor.tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    batch["labels"] = answer_labels(batch["input_ids"], starts, eou_id)
    return dict(batch)


def collate_for_generation(processor, images: list[Image.Image], questions: list[str]) -> dict[str, torch.Tensor]:
    """Batch prompts with LEFT padding, so every row's answer starts at the same position."""
    prompts = [render_prompt(processor, q) for q in questions]
    batch = processor(
        text=prompts, images=[[image] for image in images], padding=True, padding_side="left", return_tensors="pt"
    )
    return dict(batch)
