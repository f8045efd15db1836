"""Answer questions about page images with batched greedy or beam-search generation.

One :class:`Predictor` serves evaluation, ``doctune predict`` and any HTTP front end, so they all
render prompts and decode answers the same way.
"""

from collections.abc import Sequence

import torch
from PIL import Image

from doctune.checkpoint import load_for_inference
from doctune.models import default_device
from doctune.prompt import END_OF_UTTERANCE, collate_for_generation


class Predictor:
    """A model and its processor, ready to answer questions.

    Args:
        model: an Idefics2-style model in eval mode.
        processor: its processor (chat template, tokenizer, image processor).
        max_new_tokens: upper bound on answer length in tokens.
        num_beams: 1 answers greedily; more keeps that many candidate answers per question and
            returns the most likely (beam search), which costs about that many times the decoding.
    """

    def __init__(self, model, processor, max_new_tokens: int = 32, num_beams: int = 1):
        if num_beams < 1:
            raise ValueError(f"num_beams must be 1 (greedy) or more, got {num_beams}")
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        tokenizer = processor.tokenizer
        self._stop_ids = [tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE), tokenizer.eos_token_id]
        self._pad_id = tokenizer.pad_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def answer(self, images: Sequence[Image.Image], questions: Sequence[str]) -> list[str]:
        """Answers for one batch of (image, question) pairs, stripped of whitespace.

        Rows that pass the same image object share its prompt prefix: the page and the chat
        template's text before the question run through the model once per distinct page, not
        once per question (see :meth:`_prefill_pages_once`).
        """
        batch = collate_for_generation(self.processor, list(images), list(questions))
        batch = {k: v.to(self.device) for k, v in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        inputs = self._prefill_pages_once(batch, images) or batch
        output = self.model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=self.num_beams,
            eos_token_id=self._stop_ids,
            pad_token_id=self._pad_id,
        )
        # Every row's prompt ends at the same column, so the answers start there.
        answers = output[:, inputs["input_ids"].shape[1]:]
        texts = self.processor.batch_decode(answers, skip_special_tokens=True)
        return [text.strip() for text in texts]

    def _prefill_pages_once(self, batch: dict[str, torch.Tensor], images: Sequence[Image.Image]) -> dict | None:
        """Generation inputs whose shared prompt prefix is already in the cache, one per distinct page.

        Every prompt opens with the same tokens (the chat template's start and the page's image
        tokens); only the page's pixels differ. That prefix, the bulk of a prompt, runs once per
        distinct page; its key/value cache is copied to the rows that ask about the page, and
        ``generate`` continues each row from there with its question. The padding moves from the
        left edge to between the prefix and the question, masked out; positions come from the
        attention mask, so each row is computed as if asked alone.

        Returns ``None`` (generate as usual) when every page is distinct or the shared prefix
        does not hold every image token.
        """
        slots: dict[int, int] = {}
        row_page = [slots.setdefault(id(image), len(slots)) for image in images]
        if len(slots) == len(images):
            return None
        prompts = [ids[keep.bool()] for ids, keep in zip(batch["input_ids"], batch["attention_mask"])]
        shared = _common_prefix_length(prompts)
        if any((prompt[shared:] == self.model.config.image_token_id).any() for prompt in prompts):
            return None
        first_rows = torch.tensor([row_page.index(page) for page in range(len(slots))], device=self.device)
        prefix = prompts[0][:shared].expand(len(slots), shared)
        cache = self.model(
            input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, logits_to_keep=1,
            pixel_values=batch["pixel_values"][first_rows], pixel_attention_mask=batch["pixel_attention_mask"][first_rows],
        ).past_key_values
        # Beam search expands each row into num_beams adjacent rows, but leaves a given cache as it is.
        cache.reorder_cache(torch.tensor(row_page, device=self.device).repeat_interleave(self.num_beams))
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.full((len(prompts), width), self._pad_id, dtype=prefix.dtype, device=self.device)
        attention_mask = torch.zeros_like(input_ids)
        for row, prompt in enumerate(prompts):
            question = len(prompt) - shared
            input_ids[row, :shared], input_ids[row, width - question:] = prompt[:shared], prompt[shared:]
            attention_mask[row, :shared] = attention_mask[row, width - question:] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "past_key_values": cache}


def _common_prefix_length(prompts: Sequence[torch.Tensor]) -> int:
    """How many leading tokens all ``prompts`` share, leaving each at least its last token."""
    shortest = min(len(prompt) for prompt in prompts) - 1
    heads = torch.stack([prompt[:shortest] for prompt in prompts])
    differs = (heads != heads[0]).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else shortest


def load_predictor(spec: str, max_new_tokens: int = 32, precision: str = "auto", num_beams: int = 1) -> Predictor:
    """A :class:`Predictor` for a hub id, model folder, run or checkpoint folder, or ``doctune-tiny``."""
    model, processor = load_for_inference(spec, default_device(), precision)
    return Predictor(model, processor, max_new_tokens, num_beams)
