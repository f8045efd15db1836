"""Evaluation during ``pretrain_tiny.py``: greedy answers on held-out pages (ANLS per document
kind) and a teacher-forced probe that compares the connector's visual tokens with the oracle's."""

from __future__ import annotations

import random
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

from reading_pages import TARGET_KIND, render_generic, synth_available, synth_page
from row_questions import FOLLOWS, READ_ON, TRANSCRIBE
from tiny_model import image_features, lm_loss


@contextmanager
def replaced_visual_tokens(model, tokens: list):
    """Make the connector return ``tokens`` (one ``(latents, hidden)`` tensor per image, consumed
    in order) instead of its own output, for as long as the context lasts."""
    queue = list(tokens)

    def swap(module, inputs, output):
        if len(queue) < output.size(0):
            raise RuntimeError(f"replaced_visual_tokens: {output.size(0)} images, {len(queue)} token sets left")
        return torch.stack([queue.pop(0) for _ in range(output.size(0))]).to(output.dtype)

    handle = model.model.connector.register_forward_hook(swap)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def generate_answers(model, processor, pages_qa: list, max_new_tokens: int = 40, batch_size: int = 16,
                     visual_tokens: list | None = None) -> list:
    """Greedy answers for (image, question) pairs, through the public generate API. With
    ``visual_tokens`` (one per pair), the language model reads those instead of the connector's."""
    tok = processor.tokenizer
    old = tok.padding_side
    tok.padding_side = "left"
    preds = []
    model.eval()
    try:
        for i in range(0, len(pages_qa), batch_size):
            chunk = pages_qa[i : i + batch_size]
            swap = replaced_visual_tokens(model, visual_tokens[i : i + batch_size]) if visual_tokens else nullcontext()
            texts = [
                processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                    add_generation_prompt=True,
                )
                for _, q in chunk
            ]
            enc = processor(text=texts, images=[[img] for img, _ in chunk], return_tensors="pt", padding=True)
            with swap:
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
            new = out[:, enc["input_ids"].shape[1] :]
            preds += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    finally:
        tok.padding_side = old
        model.train()
    return preds


def score(preds: list, answers: list) -> dict:
    from doctune.metrics import anls, exact_match

    n = max(1, len(preds))
    return {
        "anls": round(sum(anls(p, [a]) for p, a in zip(preds, answers)) / n, 4),
        "em": round(sum(exact_match(p, [a]) for p, a in zip(preds, answers)) / n, 4),
        "n": len(preds),
    }


# Question forms left out of the held-out sets. FOLLOWS and READ_ON questions ask to continue a
# quoted row: reading exercises of pre-training, not questions about a document's fields. Synthetic
# kinds also leave out line transcription, so their sets hold only field questions; generic pages
# keep it, as transcription is one of their own question forms.
_CONTEXT_FORMS = (FOLLOWS, READ_ON)
_SYNTH_SKIPPED_FORMS = (TRANSCRIBE,) + _CONTEXT_FORMS


def eval_sets(args) -> dict:
    rng = random.Random(10_000 + args.seed)
    sets = {}
    items = []
    for s in range(args.eval_pages):
        p = render_generic(1_000_000 + s)
        q, a = rng.choice([x for x in p.qa if not x[0].startswith(_CONTEXT_FORMS)])
        items.append((p, q, a))
    sets["generic"] = items
    if synth_available():
        # Unique: a kind repeated in --kinds to weight training gets one set.
        for kind in [*dict.fromkeys(args.kinds), TARGET_KIND]:
            items = []
            for s in range(args.eval_pages):
                p = synth_page(kind, 900_000 + s, rng)
                if p.qa:
                    q, a = rng.choice([x for x in p.qa if not x[0].startswith(_SYNTH_SKIPPED_FORMS)] or p.qa)
                    items.append((p, q, a))
            if items:
                sets[kind] = items
    return sets


def probe_batch(batcher, args) -> dict:
    """A fixed batch of held-out pages (generic and every synth kind, never the target domain) with
    ``args.turns`` questions each, for teacher-forced checks of reading."""
    rng = random.Random(20_000 + args.seed)
    pages = [render_generic(2_000_000 + s) for s in range(args.eval_pages // 2)]
    if synth_available():
        pages += [synth_page(k, 2_000_000 + s, rng) for k in dict.fromkeys(args.kinds) for s in range(2)]
    return batcher.make(pages, args.turns, rng)


@torch.no_grad()
def probe_eval(model, batch: dict, oracle) -> dict:
    """Answer loss and answers read exactly (teacher forced, so what greedy decoding would give)
    on the probe batch, from the connector's visual tokens and from the oracle's: the gap says
    whether the connector or the language model limits reading."""
    model.eval()
    try:
        _, lat = image_features(model, batch)
        ideal = oracle(batch["latent_targets"])
        res = {}
        for name, tokens in (("real", lat), ("oracle", ideal)):
            loss, stats = lm_loss(model, batch, tokens)
            res[name] = {"lm": round(float(loss), 4), **{k: round(v, 4) for k, v in stats.items()}}
        res["oracle_cos"] = round(float(F.cosine_similarity(lat, ideal, dim=-1).mean()), 4)
    finally:
        model.train()
    return res


def run_eval(model, processor, sets: dict, tokens_for=None) -> dict:
    """Greedy ANLS per set of (page, question, answer). With ``tokens_for`` (page -> visual tokens),
    the language model reads those tokens instead of the connector's: ``oracle_tokens_for`` gives
    the ANLS a perfect connector would allow."""
    res = {}
    for name, items in sets.items():
        tokens = [tokens_for(p) for p, _, _ in items] if tokens_for else None
        preds = generate_answers(model, processor, [(p.image, q) for p, q, _ in items], visual_tokens=tokens)
        res[name] = score(preds, [a for _, _, a in items])
        res[name]["example"] = [items[0][1], items[0][2], preds[0]]
    return res


def oracle_tokens_for(batcher, oracle):
    """page -> the oracle's visual tokens for it (its characters laid into the latent cells)."""
    return lambda page: oracle(batcher.make([page], 1, random.Random(0))["latent_targets"])[0]


def evaluate(model, processor, oracle, batcher, sets: dict, probe: dict) -> dict:
    """Held-out greedy ANLS through the connector's tokens (``eval``) and through the oracle's
    (``eval_oracle``: what a perfect connector would allow), and the teacher-forced probe."""
    return {"eval": run_eval(model, processor, sets),
            "eval_oracle": run_eval(model, processor, sets, oracle_tokens_for(batcher, oracle)),
            "probe": probe_eval(model, probe, oracle)}
