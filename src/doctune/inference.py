"""Answer questions about page images with batched greedy generation.

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
    """

    def __init__(self, model, processor, max_new_tokens: int = 32):
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        tokenizer = processor.tokenizer
        self._stop_ids = [tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE), tokenizer.eos_token_id]
        self._pad_id = tokenizer.pad_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def answer(self, images: Sequence[Image.Image], questions: Sequence[str]) -> list[str]:
        """Greedy answers for one batch of (image, question) pairs, stripped of whitespace.

        Rows that pass the same image object share its encoding: the vision encoder and the
        connector run once per distinct page, not once per question.
        """
        batch = collate_for_generation(self.processor, list(images), list(questions))
        batch = {k: v.to(self.device) for k, v in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        output = self.model.generate(
            **self._encode_pages_once(batch, images),
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            eos_token_id=self._stop_ids,
            pad_token_id=self._pad_id,
        )
        # Left padding puts every prompt's end at the same column, so the answers start there.
        answers = output[:, batch["input_ids"].shape[1]:]
        texts = self.processor.batch_decode(answers, skip_special_tokens=True)
        return [text.strip() for text in texts]

    def _encode_pages_once(self, batch: dict[str, torch.Tensor], images: Sequence[Image.Image]) -> dict:
        """Generation inputs with the image features computed once per distinct page.

        ``generate`` would encode every row's pixels; here the distinct pages are encoded and
        their features repeated for the rows that ask about them, passed as the pre-computed
        ``mm_encoder_outputs`` that ``generate`` accepts (the encoder returns one feature tensor
        per row, image splits included). Left as it is when every page is distinct.
        """
        slots: dict[int, int] = {}
        row_page = [slots.setdefault(id(image), len(slots)) for image in images]
        if len(slots) == len(images):
            return batch
        first_rows = torch.tensor([row_page.index(page) for page in range(len(slots))], device=self.device)
        features = self.model.get_image_features(
            batch["pixel_values"][first_rows], batch["pixel_attention_mask"][first_rows], return_dict=True,
        )
        features.pooler_output = [features.pooler_output[page] for page in row_page]
        shared = {k: v for k, v in batch.items() if k not in ("pixel_values", "pixel_attention_mask")}
        return {**shared, "mm_encoder_outputs": {"image": features}}


def load_predictor(spec: str, max_new_tokens: int = 32, precision: str = "auto") -> Predictor:
    """A :class:`Predictor` for a hub id, model folder, run or checkpoint folder, or ``doctune-tiny``."""
    model, processor = load_for_inference(spec, default_device(), precision)
    return Predictor(model, processor, max_new_tokens)
