"""The prompt and the labels: the only place that decides what the model sees and learns.

Training, evaluation and prediction all render questions through :func:`render_prompt`, so the
text the model answers at serving time is byte-for-byte the text it was trained on. The loss
covers the answer and its end-of-utterance token only (:func:`answer_labels`).
"""

from collections.abc import Sequence

import torch
from PIL import Image

IGNORE_INDEX = -100  # label value that torch's cross-entropy skips
END_OF_UTTERANCE = "<end_of_utterance>"


def build_messages(question: str, answer: str | None = None) -> list[dict]:
    """A one-turn chat: the page image and the question, then the answer if given."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def render_prompt(processor, question: str) -> str:
    """Chat-template text for a question, ending where the model starts its answer."""
    return processor.apply_chat_template(build_messages(question), add_generation_prompt=True)


def render_conversation(processor, question: str, answer: str) -> str:
    """Chat-template text for a question and its answer, as used for training."""
    return processor.apply_chat_template(build_messages(question, answer))


def answer_labels(input_ids: torch.Tensor, prompt_lengths: Sequence[int], eou_id: int) -> torch.Tensor:
    """Labels that train on the answer and its closing end-of-utterance token only.

    Args:
        input_ids: ``[batch, seq]`` right-padded token ids of prompt + answer conversations.
        prompt_lengths: per row, the number of tokens of the prompt (everything up to and
            including ``Assistant:``).
        eou_id: id of the ``<end_of_utterance>`` token.

    Returns:
        ``[batch, seq]`` labels: ``input_ids`` from the end of the prompt through the first
        end-of-utterance after it, ``IGNORE_INDEX`` elsewhere (prompt, image, question,
        trailing newline and padding).

    Raises:
        ValueError: a row has no end-of-utterance after its prompt (it was truncated).
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, start in enumerate(prompt_lengths):
        closing = (input_ids[row, start:] == eou_id).nonzero()
        if len(closing) == 0:
            raise ValueError(f"row {row}: no {END_OF_UTTERANCE} after the prompt; was the text truncated?")
        end = start + int(closing[0]) + 1
        labels[row, start:end] = input_ids[row, start:end]
    return labels


def _prompt_lengths(processor, prompts: list[str], full_ids: torch.Tensor) -> list[int]:
    """Token counts of the prompts, checked to be a prefix of the full conversations."""
    prompt_ids = processor(text=prompts)["input_ids"]
    for row, ids in enumerate(prompt_ids):
        if full_ids[row, : len(ids)].tolist() != list(ids):
            raise ValueError(
                "the tokenizer splits the prompt differently when the answer follows it; "
                f"cannot tell answer tokens apart (row {row}: {prompts[row]!r})"
            )
    return [len(ids) for ids in prompt_ids]


def collate_for_training(
    processor, images: list[Image.Image], questions: list[str], answers: list[str]
) -> dict[str, torch.Tensor]:
    """Batch conversations with right padding and answer-only labels.

    Returns:
        The processor's tensors (``input_ids``, ``attention_mask``, ``pixel_values``,
        ``pixel_attention_mask``) plus ``labels``.
    """
    texts = [render_conversation(processor, q, a) for q, a in zip(questions, answers)]
    batch = processor(
        text=texts, images=[[image] for image in images], padding=True, padding_side="right", return_tensors="pt"
    )
    prompts = [render_prompt(processor, q) for q in questions]
    lengths = _prompt_lengths(processor, prompts, batch["input_ids"])
    eou_id = processor.tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    batch["labels"] = answer_labels(batch["input_ids"], lengths, eou_id)
    return dict(batch)


def collate_for_generation(processor, images: list[Image.Image], questions: list[str]) -> dict[str, torch.Tensor]:
    """Batch prompts with LEFT padding, so every row's answer starts at the same position."""
    prompts = [render_prompt(processor, q) for q in questions]
    batch = processor(
        text=prompts, images=[[image] for image in images], padding=True, padding_side="left", return_tensors="pt"
    )
    return dict(batch)
