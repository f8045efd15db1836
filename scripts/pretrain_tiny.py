"""Pre-train ``doctune-tiny`` to read synthetic business documents.

Starts from the random-weight checkpoint of ``scripts/build_tiny.py`` and trains it, on CPU, to
answer reading questions about rendered pages. The target domain of the demo (``invoice``) is
never trained on; it is only evaluated zero-shot, for information.

The losses, summed with their ``--*-weight``:

* the language-model loss on the answer tokens (chat format of the fine-tuning, loss on the
  answer and its ``<end_of_utterance>`` only; several question/answer turns per page);
* ``patch`` (auxiliary, dense): a linear head on every vision-encoder patch output predicts the
  characters whose centres fall in that patch (``--patch-slots`` slots, left to right, top to
  bottom). It teaches the vision side to see glyphs long before the language model can use them;
* ``latent`` (auxiliary, dense): the perceiver latents are laid out on a ``--latent-grid``
  (columns x rows) over the page and a linear head on latent ``i`` predicts the characters in grid
  cell ``i``. It teaches the perceiver to route each page region to its own visual token. In the
  ``anchored`` layout (the default) latent ``(r, c)`` is patch ``(r, c)`` itself, so the visual
  tokens are the page's patches in reading order;
* ``pos`` (auxiliary): a linear head on every encoder output predicts its patch's row and column.
  Trained for glyphs alone, the encoder drops where a patch is, and the perceiver, which has no
  position of its own, cannot route by it;
* ``crop`` (auxiliary, dense): the same patch head on ink-dense, patch-aligned crops (4 x 8
  patches) of the resized pages: glyph learning is local, and a crop costs a fraction of a page;
* ``route`` (auxiliary): the first perceiver layer's attention of latent ``i`` is pushed onto the
  patches of its grid cell (-log of the attention mass there). Without it the latents all see the
  same average of the page for hundreds of steps (uniform attention at init).

The heads live outside the Idefics2 model: they are saved beside the checkpoint
(``<output>-heads.pt``, reloaded by a stage that continues from it), so the output stays a plain
``Idefics2ForConditionalGeneration`` + processor folder.

Questions: each page's own (label/value, table cells, "Transcribe the line that starts with ..."),
plus "What follows "<first words of a row>"?" and one long "Read on from ..." transcription
(``reading_pages.follow_questions``), which every page gets as one of its turns.

Initialisation (``init_model``): perceiver latents random (built from a config they are all ones,
so every latent is identical), text embeddings with std 1 so text tokens have the unit RMS the
perceiver's final RMSNorm gives the visual tokens.

The committed ``doctune-tiny`` was made in stages, each continuing from the last; every command
and its output is in ``src/doctune/assets/doctune-tiny-pretrain.log``. Stages 1 and 2 shared the
CPU with other jobs; stages stopped by hand are written with the step they stopped at. Stages 1-4
used the first architecture (128 latents stretched over an 8 x 16 grid, a 2-layer perceiver with 2
key/value heads), so their commands pin it:
    OLD="--latent-grid 8 16 --latent-layout stretched --latent-slots 12 --perceiver-depth 2 --perceiver-kv-heads 2"
    # 1: full pages only, 16 pages per step, LM loss from step 300 (stopped at step 400)
    PYTHONPATH=src python scripts/pretrain_tiny.py $OLD --output /tmp/s1 --batch-size 16 \
        --crops-per-page 0 --lm-start 300 --warmup 50 --max-steps 400 --schedule-steps 1500 --minutes 68
    # 2: ink-dense crops too, 8 pages per step
    PYTHONPATH=src python scripts/pretrain_tiny.py $OLD --init-from /tmp/s1 --output /tmp/s2 --log-mode a \
        --minutes 68
    # 3: the vision encoder alone (pretrain_vision.py), in three runs: crops only, whose position
    #    ids were still stretched over the whole grid (stopped at step 1800); crops only with their
    #    page's position ids (stopped at step 800); crops and whole pages, 30 minutes. The first
    #    run's code is gone (it was the bug), so a rerun starts at the second run:
    PYTHONPATH=src python scripts/pretrain_vision.py --init-from /tmp/s2 --output /tmp/s3 \
        --full-pages 0 --crops 96 --max-steps 800
    PYTHONPATH=src python scripts/pretrain_vision.py --init-from /tmp/s3 --output /tmp/s3 --minutes 30
    # 4: everything again on fresh pages, 5 questions per page
    PYTHONPATH=src python scripts/pretrain_tiny.py $OLD --init-from /tmp/s3 --log-mode a --minutes 62 \
        --batch-size 8 --turns 5 --crops-per-page 6 --lm-start 50 --warmup 30 --lr 1.5e-3 \
        --lr-vision 5e-4 --eval-every 200 --save-every 100

Stages 5-8 moved to one latent per patch (432 latents anchored on an 18 x 24 grid) and a fresh
1-layer connector. Stages 5a-5c trained the old connector with 432 latents; only their effect on
the vision encoder (the position head of 5b-5c) lasts, since stage 6 replaces the connector.
    # 5a: routing only, vision frozen, stretched layout, 2 perceiver layers (150 steps)
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s4 --output /tmp/s5a --log-mode a \
        --perceiver-depth 2 --perceiver-kv-heads 2 --latent-layout stretched --route-layers 2 \
        --batch-size 8 --turns 1 --crops-per-page 0 --freeze-vision --patch-weight 0 --lm-weight 0 \
        --route-weight 1 --lr 5e-3 --warmup 10 --max-steps 150 --schedule-steps 150
    # 5b: + the encoder's position head, vision trained (stopped after step 310 of 400; the step-300
    #     checkpoint goes on)
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s5a --output /tmp/s5b --log-mode a \
        --perceiver-depth 2 --perceiver-kv-heads 2 --latent-layout stretched --route-layers 2 \
        --turns 1 --crops-per-page 0 --pos-weight 1 --lm-weight 0 --route-weight 1 --lr 3e-3 \
        --lr-vision 5e-4 --warmup 20 --max-steps 400 --schedule-steps 400
    # 5c: anchored layout (stopped after step 90 of 200; the step-50 checkpoint goes on)
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s5b --output /tmp/s5c --log-mode a \
        --perceiver-depth 2 --perceiver-kv-heads 2 --route-layers 2 --turns 1 --crops-per-page 0 \
        --pos-weight 1 --lm-weight 0 --route-weight 1 --lr 3e-3 --lr-vision 3e-4 --warmup 10 \
        --max-steps 200 --schedule-steps 200
    # 6a, 6b: a fresh connector, trained alone (vision frozen) on routing and the per-latent head
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s5c --fresh-connector --output /tmp/s6a \
        --log-mode a --turns 1 --crops-per-page 0 --freeze-vision --patch-weight 0 --lm-weight 0 \
        --route-weight 1 --lr 3e-3 --warmup 10 --max-steps 300 --schedule-steps 300
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s6a --output /tmp/s6b --log-mode a \
        --turns 1 --crops-per-page 0 --freeze-vision --patch-weight 0 --lm-weight 0 --route-weight 1 \
        --lr 4e-3 --warmup 10 --max-steps 400 --schedule-steps 400
    # 7: the language model too, 6 questions per page (stopped after step 440; the step-400 checkpoint
    #    goes on)
    LM="--turns 6 --crops-per-page 0 --freeze-vision --patch-weight 0 --pos-weight 0 --route-weight 0.5 \
        --lm-start 0 --lr 1.5e-3 --warmup 30 --eval-every 200 --save-every 50"
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s6b --output /tmp/s7 --log-mode a \
        $LM --minutes 75
    # 8: as 7, with a long transcription turn on every page
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s7 --log-mode a $LM --minutes 75

The committed checkpoint is stage 8's. Stage 8's language model could not copy even a prefix written
in its own question; stages 9-10, not (yet) in the committed checkpoint, teach it to find a string and
read on from it, first in random text, then on pages. /tmp/s8 is stage 8's output. Stages 9 and 9c
ran at commit de946d5, whose lookup_sample had only the "What follows" form.
    # 9b: the connector learns the oracle visual tokens (1 thread, beside runs not in this chain;
    #     stopped after step 400, the step-400 checkpoint goes on)
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s8 --output /tmp/s9b --log-mode a \
        --threads 1 --turns 1 --crops-per-page 0 --freeze-vision --patch-weight 0 --pos-weight 0 \
        --route-weight 0.5 --latent-weight 1 --oracle-weight 1 --lm-weight 0 --lr 3e-3 --warmup 10 --minutes 45
    # 9, 9c, 9d: lookup in random strings only, growing (9 stopped after step 370, its step-300
    #     checkpoint goes on; 9c after step 560, step 500 goes on; 9d after step 920, step 900 goes on)
    LOOK="--batch-size 0 --lm-weight 0 --lr 1e-3 --warmup 10 --schedule-steps 100000 --min-lr-frac 1 --save-every 100"
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s8 --output /tmp/s9 --log-mode a $LOOK \
        --lookup-schedule 12:300,24:150,48:150,96:150,192:150,384:200
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s9 --output /tmp/s9c --log-mode a $LOOK \
        --lookup-schedule 12:400,24:200,48:150,96:150,192:150,384:200
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s9c --output /tmp/s9d --log-mode a $LOOK \
        --lookup-schedule 12:250,24:200,48:150,96:150,192:150,384:200
    # 10: pages again, with 9b's connector; half the pages' visual tokens are the oracle's, and each
    #     step also asks two questions about page text and 16 about random strings
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/s9d --connector-from /tmp/s9b --log-mode a \
        --turns 6 --crops-per-page 0 --freeze-vision --patch-weight 0 --pos-weight 0 --route-weight 0.5 \
        --latent-weight 1 --oracle-weight 1 --oracle-lm 0.5 --lm-start 0 --text-per-page 2 --text-rows 8 \
        --lookup-schedule 192:200,384:100000 --lookup-batch 16 --lr 1.5e-3 --warmup 30 --eval-every 200 \
        --minutes 45
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_tiny  # noqa: E402
from reading_pages import (  # noqa: E402
    lookup_sample, render_generic, sample_pages, synth_available, synth_page, visual_rows)

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------------------------------


class Batcher:
    def __init__(self, processor, args):
        self.processor = processor
        self.tok = processor.tokenizer
        self.args = args
        self.vocab = len(self.tok)
        self.eou = self.tok.convert_tokens_to_ids("<end_of_utterance>")
        self.assistant_ids = self.tok("\nAssistant:", add_special_tokens=False)["input_ids"]
        self.patch = args.patch_size
        self.per_side = args.longest_edge // args.patch_size  # Idefics2 vision: image_size / patch_size
        self.gw, self.gh = args.latent_grid

    def char_id(self, ch: str) -> int:
        i = self.tok.convert_tokens_to_ids(ch)
        return i if i is not None and i != self.tok.unk_token_id else self.tok.unk_token_id

    def conversation(self, qa: list, image: bool = True) -> list:
        msgs = []
        for i, (q, a) in enumerate(qa):
            content = ([{"type": "image"}] if i == 0 and image else []) + [{"type": "text", "text": q}]
            msgs.append({"role": "user", "content": content})
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
        return msgs

    def labels_for(self, ids: torch.Tensor) -> torch.Tensor:
        """-100 everywhere except assistant answers (from the space after 'Assistant:') and their eou."""
        labels = torch.full_like(ids, -100)
        a = self.assistant_ids
        for b in range(ids.size(0)):
            row = ids[b].tolist()
            i = 0
            while i < len(row):
                if row[i : i + len(a)] == a:
                    j = i + len(a)
                    while j < len(row) and row[j] != self.eou:
                        labels[b, j] = row[j]
                        j += 1
                    if j < len(row):
                        labels[b, j] = row[j]
                    i = j
                i += 1
        return labels

    def text_batch(self, pages: list, per_page: int, rng: random.Random, rows: int) -> dict:
        """Questions about the page's text instead of its image: the user turn holds ``rows``
        consecutive rows of the page's text (the ones around the answer) and then the question.
        Reading from characters the model is given is the copy skill that reading from visual
        tokens needs too, at a fraction of the sequence length."""
        texts = []
        for p in pages:
            page_rows = visual_rows(p.lines)
            for q, a in rng.sample(p.qa, min(per_page, len(p.qa))):
                first = a.split("\n")[0]
                at = next((i for i, r in enumerate(page_rows) if first in r), 0)
                lo = max(0, min(at - rng.randint(0, rows - 1), len(page_rows) - rows))
                context = "\n".join(page_rows[lo : lo + rows])
                texts.append(self.text_turn(context, q, a))
        return self.text_encode(texts)

    def lookup_batch(self, n: int, length: int, rng: random.Random) -> dict:
        """``n`` text-only lookup questions (``lookup_sample``) about random strings of ``length``
        characters."""
        return self.text_encode([self.text_turn(*lookup_sample(rng, length)) for _ in range(n)])

    def text_turn(self, context: str, question: str, answer: str) -> str:
        return self.processor.apply_chat_template(self.conversation([(context + "\n" + question, answer)], image=False))

    def text_encode(self, texts: list) -> dict:
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = dict(enc)
        out["labels"] = self.labels_for(enc["input_ids"])
        return out

    def cell_spans(self, n: int, cells: int) -> list:
        """Patch range ``[a, b)`` along one axis for each of ``cells`` latent cells on a page ``n``
        patches long. ``anchored``: cell ``i`` is patch ``i`` while the page fits the grid (a cell
        past the page's edge gets no patch); otherwise, and in ``stretched`` layout, the cells
        divide the page evenly."""
        if self.args.latent_layout == "anchored" and n <= cells:
            return [(i, i + 1) if i < n else (0, 0) for i in range(cells)]
        spans = []
        for i in range(cells):
            a = min(int(i * n / cells), n - 1)
            spans.append((a, min(max(int(math.ceil((i + 1) * n / cells)), a + 1), n)))
        return spans

    def route_mask(self, pam: torch.Tensor, nh: int, nw: int) -> torch.Tensor:
        """(B, latents, patches): the patches of each latent's grid cell."""
        B = pam.size(0)
        mask = torch.zeros(B, self.gh, self.gw, nh, nw, dtype=torch.bool)
        for b in range(B):
            rh, rw = int(pam[b, :, 0].sum()) // self.patch, int(pam[b, 0, :].sum()) // self.patch
            for r, (r0, r1) in enumerate(self.cell_spans(rh, self.gh)):
                for c, (c0, c1) in enumerate(self.cell_spans(rw, self.gw)):
                    mask[b, r, c, r0:r1, c0:c1] = True
        return mask.view(B, self.gh * self.gw, nh * nw)

    def make(self, pages: list, turns: int, rng: random.Random, with_text: bool = True) -> dict:
        texts, images = [], []
        for p in pages:
            # The long transcription ("Read on from ...") is always one of the turns: it is the densest
            # reading target of the page.
            long = [x for x in p.qa if x[0].startswith("Read on")][:1]
            rest = [x for x in p.qa if not x[0].startswith("Read on")]
            qa = rng.sample(rest, min(turns - len(long), len(rest))) + long
            qa = qa or [("What is written at the top?", "?")]
            texts.append(self.processor.apply_chat_template(self.conversation(qa)))
            images.append([p.image])
        enc = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        out = dict(enc)
        out["labels"] = self.labels_for(enc["input_ids"])
        pam = enc["pixel_attention_mask"][:, 0]  # B H W
        B, Hm, Wm = pam.shape
        nh, nw = Hm // self.patch, Wm // self.patch
        K, S = self.args.patch_slots, self.args.latent_slots
        ptgt = torch.full((B, nh * nw, K), -100, dtype=torch.long)
        ltgt = torch.zeros((B, self.gw * self.gh, S), dtype=torch.long)
        for b, p in enumerate(pages):
            h = int(pam[b, :, 0].sum())
            w = int(pam[b, 0, :].sum())
            s = h / p.image.height
            rh, rw = h // self.patch, w // self.patch
            real = torch.zeros(nh, nw, dtype=torch.bool)
            real[:rh, :rw] = True
            ptgt[b][real.view(-1)] = 0
            pslots = {}
            lslots = {}
            for ch, cx, cy, _ in sorted(p.chars, key=lambda c: (c[3], c[1])):
                x, y = cx * s, cy * s
                pr, pc = int(y // self.patch), int(x // self.patch)
                cid = self.char_id(ch)
                if pr < rh and pc < rw:
                    k = pr * nw + pc
                    if self.args.patch_slot_mode == "spatial":
                        # Slot = where the character's centre lies inside the patch (2 rows x K/2 columns).
                        sx = K // 2
                        n = int((y % self.patch) / self.patch * 2) * sx + int((x % self.patch) / self.patch * sx)
                        if ptgt[b, k, n] == 0:
                            ptgt[b, k, n] = cid
                    else:
                        n = pslots.get(k, 0)
                        if n < K:
                            ptgt[b, k, n] = cid
                            pslots[k] = n + 1
                row_anchored = self.args.latent_layout == "anchored" and rh <= self.gh
                col_anchored = self.args.latent_layout == "anchored" and rw <= self.gw
                if (row_anchored and pr >= rh) or (col_anchored and pc >= rw):
                    continue  # in a partial patch at the page's edge, which the encoder drops
                gr = pr if row_anchored else min(int(y / h * self.gh), self.gh - 1)
                gc = pc if col_anchored else min(int(x / w * self.gw), self.gw - 1)
                k = gr * self.gw + gc
                n = lslots.get(k, 0)
                if n < S:
                    ltgt[b, k, n] = cid
                    lslots[k] = n + 1
        out["patch_targets"] = ptgt
        out["route_mask"] = self.route_mask(pam, nh, nw)
        out["latent_targets"] = ltgt
        return out

    def crops(self, batch: dict, per_page: int, rows: int, cols: int, rng: random.Random):
        """Patch-aligned crops of the (already resized, normalised) pages with their patch targets.

        Glyph learning is local: a vision forward on a few-patch crop costs a fraction of a page and
        can be chosen where the ink is, so many more characters are seen per second."""
        pv = batch["pixel_values"][:, 0]
        pam = batch["pixel_attention_mask"][:, 0]
        p = self.patch
        B, _, Hm, Wm = pv.shape
        nh, nw = Hm // p, Wm // p
        pt = batch["patch_targets"].view(B, nh, nw, -1)
        ink = (pt[..., 0] > 0).float()
        xs, ts, ps = [], [], []
        for b in range(B):
            rh, rw = int(pam[b, :, 0].sum()) // p, int(pam[b, 0, :].sum()) // p
            if rh < rows or rw < cols:
                continue
            for _ in range(per_page):
                r0, c0 = densest_crop(ink[b, :rh, :rw], rows, cols, rng)
                xs.append(pv[b, :, r0 * p : (r0 + rows) * p, c0 * p : (c0 + cols) * p])
                ts.append(pt[b, r0 : r0 + rows, c0 : c0 + cols].reshape(rows * cols, -1))
                ps.append(page_position_ids(rh, rw, r0, c0, rows, cols, self.per_side))
        return torch.stack(xs), torch.stack(ts), torch.stack(ps)


def densest_crop(ink: torch.Tensor, rows: int, cols: int, rng: random.Random, tries: int = 6) -> tuple:
    """Top-left patch of the most inked of ``tries`` random ``rows x cols`` windows of ``ink``
    (a page's patches x characters map)."""
    best, at = -1.0, (0, 0)
    for _ in range(tries):
        r0, c0 = rng.randint(0, ink.size(0) - rows), rng.randint(0, ink.size(1) - cols)
        v = float(ink[r0 : r0 + rows, c0 : c0 + cols].sum())
        if v > best:
            best, at = v, (r0, c0)
    return at


# ----------------------------------------------------------------------------------------------
# Model pieces
# ----------------------------------------------------------------------------------------------


def init_model(model, args) -> None:
    """Initialisation that lets the image reach the language model."""
    g = torch.Generator().manual_seed(args.seed)
    res = model.model.connector.perceiver_resampler
    with torch.no_grad():
        # Distinct latent queries (built from a config they are all ones), small so the attended
        # image content dominates the residual stream.
        res.latents.copy_(torch.randn(res.latents.shape, generator=g) * args.latent_init_std)
        # Visual tokens leave the perceiver's RMSNorm with unit RMS; scale text embeddings to match.
        emb = model.model.text_model.get_input_embeddings().weight
        emb.copy_(torch.randn(emb.shape, generator=g) * args.text_embed_std)


def resize_latents(model, processor, n: int, args) -> None:
    """Give the perceiver ``n`` latent queries (fresh, random) when ``--latent-grid`` asks for a
    different number than the checkpoint has; every other weight is kept."""
    res = model.model.connector.perceiver_resampler
    if res.latents.size(0) == n:
        return
    res.latents = torch.nn.Parameter(random_latents(n, res.latents.size(1), args))
    res.n_latents = n
    use_latent_count(model, processor, n)


def random_latents(n: int, width: int, args) -> torch.Tensor:
    """Distinct, small latent queries (built from a config they are all ones, so every latent is
    identical), so the attended image content dominates the residual stream."""
    g = torch.Generator().manual_seed(args.seed)
    return torch.randn(n, width, generator=g) * args.latent_init_std


def use_latent_count(model, processor, n: int) -> None:
    """Make the config, the model and the processor agree on ``n`` visual tokens per image."""
    model.config.perceiver_config.resampler_n_latents = n
    processor.image_seq_len = n
    model.model.image_seq_len = n


def fresh_connector(model, processor, n: int, args) -> None:
    """Replace the connector (modality projection + perceiver) with a freshly initialised one of
    ``--perceiver-depth`` layers and ``--perceiver-kv-heads`` key/value heads; the vision encoder
    and the language model keep their weights. A connector trained while it could not route drops
    the glyph information the encoder has (a linear probe on its output reads half as many
    characters as one on the encoder's), so it is cheaper to start it again."""
    from transformers.models.idefics2.modeling_idefics2 import Idefics2Connector

    pc = model.config.perceiver_config
    pc.resampler_depth = args.perceiver_depth
    pc.num_key_value_heads = args.perceiver_kv_heads
    use_latent_count(model, processor, n)
    torch.manual_seed(args.seed)
    conn = Idefics2Connector(model.config)
    conn.apply(model._init_weights)
    with torch.no_grad():
        conn.perceiver_resampler.latents.copy_(random_latents(n, pc.hidden_size, args))
    model.model.connector = conn


def image_features(model, batch, freeze_vision: bool = False):
    pv = batch["pixel_values"][:, 0]
    pam = batch["pixel_attention_mask"][:, 0]
    p = model.config.vision_config.patch_size
    sub = pam.unfold(1, p, p).unfold(2, p, p)
    patch_mask = sub.sum(dim=(-1, -2)) == p * p
    with torch.set_grad_enabled(torch.is_grad_enabled() and not freeze_vision):
        vis = model.model.vision_model(pixel_values=pv, patch_attention_mask=patch_mask).last_hidden_state
    lat = model.model.connector(vis, attention_mask=patch_mask.view(pv.size(0), -1))
    return vis, lat


def page_position_ids(rh: int, rw: int, r0: int, c0: int, rows: int, cols: int, per_side: int) -> torch.Tensor:
    """Position ids of patches ``r0:r0+rows, c0:c0+cols`` of a page of ``rh x rw`` patches, as
    Idefics2's vision embeddings compute them for the whole page (fractional coordinates
    bucketed into ``per_side`` buckets per side). Fed a crop alone, the embeddings would stretch it
    over every bucket, and the position embeddings of whole pages would never be trained."""
    boundaries = torch.arange(1 / per_side, 1.0, 1 / per_side)
    h = torch.bucketize((torch.arange(r0, r0 + rows) / rh).clamp(max=1 - 1e-6), boundaries, right=True)
    w = torch.bucketize((torch.arange(c0, c0 + cols) / rw).clamp(max=1 - 1e-6), boundaries, right=True)
    return (h[:, None] * per_side + w[None, :]).reshape(-1)


def crop_features(vision, pixels: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """The vision encoder on crops, with the position ids the patches have in their pages."""
    emb = vision.embeddings
    x = emb.patch_embedding(pixels).flatten(2).transpose(1, 2) + emb.position_embedding(position_ids)
    return vision.post_layernorm(vision.encoder(inputs_embeds=x).last_hidden_state)


def patch_rows_cols(pam: torch.Tensor, patch: int) -> tuple:
    """(B, patches) row and column of every real patch of each page (-100 on padding)."""
    B, Hm, Wm = pam.shape
    nh, nw = Hm // patch, Wm // patch
    rows = torch.arange(nh)[:, None].expand(nh, nw).reshape(1, -1).repeat(B, 1)
    cols = torch.arange(nw)[None, :].expand(nh, nw).reshape(1, -1).repeat(B, 1)
    real = (pam.unfold(1, patch, patch).unfold(2, patch, patch).sum(dim=(-1, -2)) == patch * patch).view(B, -1)
    return rows.masked_fill(~real, -100), cols.masked_fill(~real, -100)


def slot_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple:
    """(correct, total) over the slots that hold a character."""
    ink = targets > 0
    return int((logits.argmax(-1)[ink] == targets[ink]).sum()), int(ink.sum())


def slot_loss(logits, targets, none_weight: float):
    """Cross-entropy over character slots, averaged over the slots holding a character, plus
    ``none_weight`` times the average over empty slots (most slots are empty: averaging over all
    of them would drown the glyph signal)."""
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1).clamp(min=0), reduction="none")
    t = targets.reshape(-1)
    ink, empty = t > 0, t == 0
    return ce[ink].sum() / ink.sum().clamp(min=1) + none_weight * ce[empty].sum() / empty.sum().clamp(min=1)


class OracleTokens(torch.nn.Module):
    """The visual tokens an ideal connector would give: each latent's characters, embedded.

    Latent ``i`` holding characters ``c_0 .. c_k`` (its ``latent_targets`` slots) becomes
    ``sum_s W_s E[c_s]``, scaled to unit RMS like the perceiver's output, where ``E`` is a fixed
    snapshot of the language model's input embeddings and ``W_s`` a fixed random rotation per slot
    (``W_0`` the identity, so a latent's first character reads as that character). A latent without
    characters is the space. Two uses:

    * the language model learns to read and copy from these clean tokens (``--oracle-lm``), without
      the vision encoder and connector in the step, so reading circuits form before the connector
      is good enough to need them;
    * the connector learns to produce them (``--oracle-weight``), so the circuits then apply to the
      page's real visual tokens.

    The tables are buffers: saved with the heads, so every later stage uses the same targets."""

    def __init__(self, embeddings: torch.Tensor, slots: int, blank: int, seed: int):
        super().__init__()
        d = embeddings.size(1)
        g = torch.Generator().manual_seed(seed)
        rotations = [torch.eye(d)] + [torch.linalg.qr(torch.randn(d, d, generator=g))[0] for _ in range(slots - 1)]
        self.register_buffer("codebook", embeddings.detach().clone())
        self.register_buffer("rotations", torch.stack(rotations))
        self.register_buffer("blank", torch.tensor(blank))

    def forward(self, targets: torch.Tensor) -> torch.Tensor:
        """(B, latents, slots) character ids, 0 where a slot is empty -> (B, latents, hidden)."""
        filled = (targets > 0).unsqueeze(-1)
        e = torch.einsum("blsd,sed->blse", self.codebook[targets], self.rotations)
        v = (e * filled).sum(2)
        empty = ~filled.any(2).squeeze(-1)
        v[empty] = self.codebook[self.blank]
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6)


def lm_loss(model, batch, lat=None):
    """Answer-token loss with ``lat`` as the visual tokens (none: a text-only batch), and
    statistics: ``answer_acc`` (answers predicted exactly, teacher forced) and ``late`` (the loss
    on answer tokens from the fourth on, where a model that copies from the page is all but sure)."""
    ids = batch["input_ids"]
    emb = model.model.text_model.get_input_embeddings()(ids)
    if lat is not None:
        mask = ids == model.config.image_token_id
        emb = emb.masked_scatter(mask.unsqueeze(-1), lat.reshape(-1, lat.size(-1)).to(emb.dtype))
    hidden = model.model.text_model(inputs_embeds=emb, attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    sel = labels != -100
    logits = model.lm_head(hidden[:, :-1][sel])
    ce = F.cross_entropy(logits, labels[sel], reduction="none")
    right, total = answers_right(logits.detach().argmax(-1) == labels[sel], sel)
    late = sel.clone()
    for k in (1, 2, 3):
        late[:, k:] &= sel[:, :-k]
        late[:, :k] = False
    late = late[sel]
    return ce.mean(), {"answer_acc": right / max(total, 1),
                       "late": float(ce.detach()[late].mean()) if late.any() else float("nan")}


def add_metrics(metrics: dict, values: dict, prefix: str = "") -> None:
    """Append this step's ``values`` to the running lists of ``metrics`` (averaged when logged)."""
    for k, v in values.items():
        metrics.setdefault(prefix + k, []).append(v)


def lookup_length(schedule: str, step: int) -> int:
    """The string length ``--lookup-schedule`` gives ``step`` (0: past the schedule)."""
    for part in filter(None, schedule.split(",")):
        length, steps = (int(x) for x in part.split(":"))
        if step < steps:
            return length
        step -= steps
    return 0


def answers_right(hits: torch.Tensor, sel: torch.Tensor) -> tuple:
    """(answers whose every token is predicted right, answers) under teacher forcing: the answers
    greedy decoding would reproduce exactly. ``hits`` follows ``sel``'s True entries row by row."""
    right = total = 0
    at = 0
    for row in sel:
        idx = row.nonzero().flatten().tolist()
        start = 0
        for i in range(1, len(idx) + 1):
            if i == len(idx) or idx[i] != idx[i - 1] + 1:  # an answer ends where the labels break
                right += bool(hits[at + start : at + i].all())
                total += 1
                start = i
        at += len(idx)
    return right, total


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def generate_answers(model, processor, pages_qa: list, max_new_tokens: int = 40, batch_size: int = 16) -> list:
    """Greedy answers for (image, question) pairs, through the public generate API."""
    tok = processor.tokenizer
    old = tok.padding_side
    tok.padding_side = "left"
    preds = []
    model.eval()
    try:
        for i in range(0, len(pages_qa), batch_size):
            chunk = pages_qa[i : i + batch_size]
            texts = [
                processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                    add_generation_prompt=True,
                )
                for _, q in chunk
            ]
            enc = processor(text=texts, images=[[img] for img, _ in chunk], return_tensors="pt", padding=True)
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


def eval_sets(args) -> dict:
    rng = random.Random(10_000 + args.seed)
    sets = {}
    items = []
    for s in range(args.eval_pages):
        p = render_generic(1_000_000 + s)
        q, a = rng.choice([x for x in p.qa if not x[0].startswith(("What follows", "Read on"))])
        items.append((p.image, q, a))
    sets["generic"] = items
    if synth_available():
        for kind in args.kinds + ["invoice"]:
            items = []
            for s in range(args.eval_pages):
                try:
                    p = synth_page(kind, 900_000 + s, rng)
                except Exception as exc:  # the generator is young; never let it kill the run
                    print(f"eval synth {kind} failed: {exc!r}", flush=True)
                    break
                if p.qa:
                    q, a = rng.choice([x for x in p.qa if not x[0].startswith(("Transcribe", "What follows", "Read on"))] or p.qa)
                    items.append((p.image, q, a))
            if items:
                sets[kind] = items
    return sets


def probe_batch(batcher, args) -> dict:
    """A fixed batch of held-out pages (generic and every synth kind, never the target domain) with
    ``args.turns`` questions each, for teacher-forced checks of reading."""
    rng = random.Random(20_000 + args.seed)
    pages = [render_generic(2_000_000 + s) for s in range(args.eval_pages // 2)]
    if synth_available():
        pages += [synth_page(k, 2_000_000 + s, rng) for k in args.kinds for s in range(2)]
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


def run_eval(model, processor, sets: dict) -> dict:
    res = {}
    for name, items in sets.items():
        preds = generate_answers(model, processor, [(img, q) for img, q, _ in items])
        res[name] = score(preds, [a for _, _, a in items])
        res[name]["example"] = [items[0][1], items[0][2], preds[0]]
    return res


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------


def heads_path(checkpoint: Path) -> Path:
    """The auxiliary heads of a stage live beside its checkpoint, never in it (the checkpoint stays a
    plain Idefics2 folder)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / (checkpoint.name + "-heads.pt")


def save_atomic(model, processor, output: Path, heads=None) -> None:
    """Write the plain checkpoint through a temporary folder (a kill never leaves half of one), and
    the auxiliary ``heads`` beside it."""
    output = Path(output)
    tmp = output.parent / (output.name + ".tmp")
    old = output.parent / (output.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        output.rename(old)
    tmp.rename(output)
    shutil.rmtree(old, ignore_errors=True)
    if heads is not None:
        torch.save(heads.state_dict(), heads_path(output))


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def json_logger(path: Path, mode: str):
    """A function that prints a record as one JSON line and appends it to ``path`` at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(path, mode)

    def log(rec: dict) -> None:
        line = json.dumps(rec)
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    return log


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=ROOT / "src/doctune/assets/doctune-tiny")
    ap.add_argument("--log", type=Path, default=ROOT / "src/doctune/assets/doctune-tiny-pretrain.log")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=68.0, help="wall-clock training budget")
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--turns", type=int, default=3, help="question/answer turns per page")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--lr-vision", type=float, default=None, help="default: --lr")
    ap.add_argument("--lr-connector", type=float, default=None, help="default: --lr")
    ap.add_argument("--lr-text", type=float, default=None, help="default: --lr")
    ap.add_argument("--freeze-vision", action="store_true",
                    help="vision encoder without gradients (a connector-only stage: much faster steps)")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--schedule-steps", type=int, default=None,
                    help="cosine horizon in steps (default: estimated from --minutes and the measured speed)")
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--patch-weight", type=float, default=1.0)
    ap.add_argument("--latent-weight", type=float, default=1.0)
    ap.add_argument("--pos-weight", type=float, default=0.0,
                    help="vision outputs predict their patch row and column: keeps the position the "
                         "perceiver needs to route each latent to its own patches")
    ap.add_argument("--lm-weight", type=float, default=1.0)
    ap.add_argument("--oracle-lm", type=float, default=0.0,
                    help="share of pages whose language-model input is the oracle visual tokens (their "
                         "characters, embedded; see OracleTokens) instead of the connector's; 1 leaves the "
                         "vision encoder and connector out of the step")
    ap.add_argument("--text-per-page", type=int, default=0,
                    help="questions per page asked about the page's text rows instead of its image "
                         "(a text-only batch beside the image batch; Batcher.text_batch)")
    ap.add_argument("--text-rows", type=int, default=8, help="rows of page text in a text-only question")
    ap.add_argument("--text-weight", type=float, default=1.0)
    ap.add_argument("--lookup-schedule", default="",
                    help="LENGTH:STEPS,...: a text-only batch of --lookup-batch lookup questions "
                         "about random strings each step, the strings growing by the schedule (lookup_sample)")
    ap.add_argument("--lookup-batch", type=int, default=32)
    ap.add_argument("--oracle-weight", type=float, default=0.0,
                    help="the connector's output regressed onto the oracle visual tokens (mean squared error)")
    ap.add_argument("--lm-start", type=int, default=200, help="steps of auxiliary losses only before the LM loss")
    ap.add_argument("--init-from", type=Path, default=None, help="continue from this plain checkpoint")
    ap.add_argument("--connector-from", type=Path, default=None,
                    help="with --init-from: the connector (and the latent and oracle heads) of this "
                         "checkpoint instead, e.g. one trained alongside on the same encoder")
    ap.add_argument("--crop-weight", type=float, default=1.0, help="patch-character loss on ink-dense crops")
    ap.add_argument("--crops-per-page", type=int, default=12)
    ap.add_argument("--crop-size", type=int, nargs=2, default=[4, 8], metavar=("ROWS", "COLS"), help="in patches")
    ap.add_argument("--log-mode", default="w", choices=["w", "a"], help="a: append (later stage of a chain)")
    ap.add_argument("--route-weight", type=float, default=0.5, help="perceiver attention-to-own-cell prior")
    ap.add_argument("--route-layers", type=int, default=1, help="perceiver layers the routing prior applies to")
    ap.add_argument("--none-weight", type=float, default=0.2, help="weight of empty slots in the auxiliary losses")
    ap.add_argument("--patch-slots", type=int, default=6)
    ap.add_argument("--patch-slot-mode", default="order", choices=["order", "spatial"],
                    help="order: k-th character in the patch; spatial: character centred in sub-cell k")
    ap.add_argument("--latent-slots", type=int, default=6)
    ap.add_argument("--fresh-connector", action="store_true",
                    help="with --init-from: a new connector (--perceiver-depth, --perceiver-kv-heads); "
                         "without --init-from the connector is always new")
    ap.add_argument("--perceiver-depth", type=int, default=1)
    ap.add_argument("--perceiver-kv-heads", type=int, default=4)
    ap.add_argument("--latent-layout", default="anchored", choices=["stretched", "anchored"],
                    help="stretched: the grid divides every page evenly; anchored: latent (r, c) is "
                         "patch (r, c) on pages that fit the grid (one patch per latent, no mixing)")
    ap.add_argument("--latent-grid", type=int, nargs=2, default=[18, 24], metavar=("COLS", "ROWS"))
    ap.add_argument("--longest-edge", type=int, default=384)
    ap.add_argument("--patch-size", type=int, default=16)
    ap.add_argument("--latent-init-std", type=float, default=0.02)
    ap.add_argument("--text-embed-std", type=float, default=1.0)
    ap.add_argument("--synth-frac", type=float, default=0.5, help="share of pages from doctune.synth kinds")
    ap.add_argument("--kinds", nargs="+", default=["receipt", "purchase_order", "form", "bank_statement"])
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--eval-pages", type=int, default=16)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args(argv)
    assert "invoice" not in args.kinds, "invoice is the held-out target domain"
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    log = json_logger(args.log, args.log_mode)

    log({"command": "PYTHONPATH=src python " + " ".join([sys.argv[0]] + sys.argv[1:]) if argv is None else str(argv),
         "args": {k: str(v) for k, v in vars(args).items()}, "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    # Build the random-weight init with the chosen sizes.
    from transformers import AutoProcessor, Idefics2ForConditionalGeneration

    build_tiny.IMAGE_LONGEST_EDGE = args.longest_edge
    build_tiny.IMAGE_SEQ_LEN = args.latent_grid[0] * args.latent_grid[1]
    build_tiny.PATCH_SIZE = args.patch_size
    build_tiny.PERCEIVER_DEPTH = args.perceiver_depth
    build_tiny.PERCEIVER_KV_HEADS = args.perceiver_kv_heads
    if args.init_from:
        # Continue from an earlier stage (a plain checkpoint: the auxiliary heads start afresh).
        processor = AutoProcessor.from_pretrained(args.init_from)
        model = Idefics2ForConditionalGeneration.from_pretrained(args.init_from)
        if args.fresh_connector:
            fresh_connector(model, processor, build_tiny.IMAGE_SEQ_LEN, args)
        else:
            resize_latents(model, processor, build_tiny.IMAGE_SEQ_LEN, args)
        if args.connector_from:
            other = Idefics2ForConditionalGeneration.from_pretrained(args.connector_from)
            model.model.connector.load_state_dict(other.model.connector.state_dict())
    else:
        init_dir = args.output.parent / (args.output.name + "-init")
        build_tiny.build(init_dir, args.seed)
        processor = AutoProcessor.from_pretrained(init_dir)
        model = Idefics2ForConditionalGeneration.from_pretrained(init_dir)
        shutil.rmtree(init_dir, ignore_errors=True)
        init_model(model, args)
    model.train()
    # Routing prior: the perceiver's first layer(s) attend in eager mode so their attention
    # weights can be supervised (latent i -> the patches of its grid cell).
    captured = []
    resampler = model.model.connector.perceiver_resampler
    if args.route_weight > 0:
        resampler.config._attn_implementation = "eager"
        for layer in resampler.layers[: args.route_layers]:
            layer.self_attn.register_forward_hook(lambda mod, inp, out: captured.append(out[1]))
    V = len(processor.tokenizer)
    vh = model.config.vision_config.hidden_size
    th = model.config.text_config.hidden_size
    heads = torch.nn.ModuleDict({
        "patch": torch.nn.Linear(vh, args.patch_slots * V),
        "latent": torch.nn.Linear(th, args.latent_slots * V),
        "pos": torch.nn.Linear(vh, 2 * (args.longest_edge // args.patch_size)),
        "oracle": OracleTokens(model.model.text_model.get_input_embeddings().weight, args.latent_slots,
                               processor.tokenizer.convert_tokens_to_ids(" "), args.seed),
    })
    for source, names in ((args.init_from, None), (args.connector_from, ("latent", "oracle"))):
        if source and heads_path(source).exists():
            # The auxiliary heads of the stage continued from, where their shapes still fit.
            saved = torch.load(heads_path(source), weights_only=True)
            own = heads.state_dict()
            kept = {k: v for k, v in saved.items()
                    if k in own and own[k].shape == v.shape and (names is None or k.split(".")[0] in names)}
            heads.load_state_dict(kept, strict=False)
            log({"heads_loaded": sorted({k.split(".")[0] for k in kept}), "from": str(source)})
    lrs = {"vision": args.lr_vision or args.lr, "connector": args.lr_connector or args.lr, "text": args.lr_text or args.lr}
    groups = {k: [] for k in lrs}
    for n, p in model.named_parameters():
        key = "vision" if "vision_model" in n else "connector" if "connector" in n else "text"
        if key == "vision" and args.freeze_vision:
            p.requires_grad_(False)
            continue
        groups[key].append(p)
    groups["vision"] += list(heads["patch"].parameters())
    groups["connector"] += list(heads["latent"].parameters())
    groups["vision"] += list(heads["pos"].parameters())
    opt = torch.optim.AdamW([{"params": ps, "lr": lrs[k], "base_lr": lrs[k], "name": k} for k, ps in groups.items()],
                            weight_decay=args.weight_decay, betas=(0.9, 0.98))
    batcher = Batcher(processor, args)
    use_synth = synth_available() and args.synth_frac > 0
    log({"synth_available": use_synth, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)})
    sets = eval_sets(args)
    probe = probe_batch(batcher, args)
    log({"eval_sets": {k: len(v) for k, v in sets.items()}})

    budget = args.minutes * 60
    t_start = time.time()
    est_steps = args.max_steps
    seen = 0
    step = 0
    t_log = time.time()
    acc = {}
    while step < args.max_steps and time.time() - t_start < budget:
        rng = random.Random(args.seed * 1_000_003 + step)
        pages = sample_pages(args, rng, args.batch_size, use_synth)
        batch = batcher.make(pages, args.turns, rng) if pages else None  # --batch-size 0: text-only steps
        # Learning rate: warmup, then cosine to min over the estimated number of steps in the budget.
        elapsed = time.time() - t_start
        if args.schedule_steps:
            est_steps = args.schedule_steps
        elif step >= 20:
            est_steps = min(args.max_steps, int(step * budget / max(elapsed, 1e-6)))
        prog = min(1.0, step / max(1, est_steps))
        mult = min(1.0, (step + 1) / args.warmup) * (
            args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * mult
        captured.clear()
        losses, metrics = {}, {}
        oracle_only = args.oracle_lm >= 1 or batch is None
        lat = ideal = None
        if not oracle_only:
            vis, lat = image_features(model, batch, args.freeze_vision)
        if batch is not None and (args.oracle_lm > 0 or args.oracle_weight > 0):
            ideal = heads["oracle"](batch["latent_targets"])
        if args.oracle_weight > 0 and lat is not None:
            losses["oracle"] = F.mse_loss(lat, ideal)
            metrics.setdefault("oracle_cos", []).append(float(F.cosine_similarity(lat.detach(), ideal, dim=-1).mean()))
        if args.route_weight > 0 and captured and not oracle_only:
            rm = batch["route_mask"].unsqueeze(1).float()  # B 1 L P
            mass = torch.stack([(a[..., : rm.size(-1)] * rm).sum(-1) for a in captured])  # layers B H L
            routed = (rm.sum(-1) > 0).expand_as(mass[0]).expand_as(mass)  # latents past the page: free
            losses["route"] = -(mass[routed] + 1e-6).log().mean()
            metrics.setdefault("route_mass", []).append(float(mass[routed].detach().mean()))
        if args.patch_weight > 0 and not oracle_only:
            pt = batch["patch_targets"]
            pl = heads["patch"](vis).view(*vis.shape[:2], args.patch_slots, V)
            losses["patch"] = slot_loss(pl, pt, args.none_weight)
            right, total = slot_accuracy(pl.detach(), pt)
            metrics.setdefault("patch_acc", []).append(right / max(total, 1))
        if args.pos_weight > 0 and not args.freeze_vision and not oracle_only:
            rows, cols = patch_rows_cols(batch["pixel_attention_mask"][:, 0], args.patch_size)
            pl = heads["pos"](vis).view(*vis.shape[:2], 2, -1)
            real = rows >= 0
            losses["pos"] = (F.cross_entropy(pl[..., 0, :][real], rows[real])
                             + F.cross_entropy(pl[..., 1, :][real], cols[real])) / 2
            metrics.setdefault("pos_acc", []).append(
                float(((pl[..., 0, :].argmax(-1) == rows) & (pl[..., 1, :].argmax(-1) == cols))[real].float().mean()))
        if args.latent_weight > 0 and not oracle_only:
            ll = heads["latent"](lat).view(*lat.shape[:2], args.latent_slots, V)
            lt = batch["latent_targets"]
            losses["latent"] = slot_loss(ll, lt, args.none_weight)
            right, total = slot_accuracy(ll.detach(), lt)
            metrics.setdefault("latent_acc", []).append(right / max(total, 1))
        if args.crop_weight > 0 and args.crops_per_page > 0 and not oracle_only:
            cx, ctg, cpos = batcher.crops(batch, args.crops_per_page, args.crop_size[0], args.crop_size[1], rng)
            cvis = crop_features(model.model.vision_model, cx, cpos)
            cl = heads["patch"](cvis).view(*cvis.shape[:2], args.patch_slots, V)
            losses["crop"] = slot_loss(cl, ctg, args.none_weight)
            right, total = slot_accuracy(cl.detach(), ctg)
            metrics.setdefault("crop_acc", []).append(right / max(total, 1))
        if step >= args.lm_start and args.lm_weight > 0 and batch is not None:
            lm_in = lat
            if oracle_only:
                lm_in = ideal
            elif args.oracle_lm > 0:
                use = torch.tensor([rng.random() < args.oracle_lm for _ in pages])
                lm_in = torch.where(use[:, None, None], ideal, lat)
            losses["lm"], stats = lm_loss(model, batch, lm_in)
            add_metrics(metrics, stats)
        length = lookup_length(args.lookup_schedule, step)
        if length:
            losses["lookup"], stats = lm_loss(model, batcher.lookup_batch(args.lookup_batch, length, rng))
            add_metrics(metrics, {**stats, "len": length}, "lookup_")
        if args.text_per_page > 0 and pages:
            losses["text"], stats = lm_loss(model, batcher.text_batch(pages, args.text_per_page, rng, args.text_rows))
            add_metrics(metrics, stats, "text_")
        total = (args.oracle_weight * losses.get("oracle", 0) + args.text_weight * losses.get("text", 0)
                 + losses.get("lookup", 0) + args.patch_weight * losses.get("patch", 0) + args.latent_weight * losses.get("latent", 0)
                 + args.route_weight * losses.get("route", 0) + args.crop_weight * losses.get("crop", 0)
                 + args.lm_weight * losses.get("lm", 0) + args.pos_weight * losses.get("pos", 0))
        opt.zero_grad(set_to_none=True)
        total.backward()
        gn = torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(heads.parameters()), 1.0)
        opt.step()
        step += 1
        seen += len(pages)
        for k, v in losses.items():
            acc.setdefault(k, []).append(float(v.detach()))
        for k, v in metrics.items():
            acc.setdefault(k, []).extend(v)
        if step % args.log_every == 0:
            now = time.time()
            log({"step": step, **{k: round(sum(v) / len(v), 4) for k, v in acc.items()},
                 "lr": round(opt.param_groups[0]["lr"], 6), "gnorm": round(float(gn), 3),
                 "samples_per_s": round(args.log_every * args.batch_size / (now - t_log), 2),
                 "elapsed_min": round((now - t_start) / 60, 2), "est_steps": est_steps})
            acc = {}
            t_log = time.time()
        if step % args.save_every == 0:
            save_atomic(model, processor, args.output, heads)
        if step % args.eval_every == 0:
            t0 = time.time()
            log({"step": step, "eval": run_eval(model, processor, sets), "probe": probe_eval(model, probe, heads["oracle"]),
                 "eval_s": round(time.time() - t0, 1)})
            t_log += time.time() - t0
            t_start += time.time() - t0  # evaluation does not eat the training budget
    save_atomic(model, processor, args.output, heads)
    log({"step": step, "final_eval": run_eval(model, processor, sets), "probe": probe_eval(model, probe, heads["oracle"]),
         "samples_seen": seen,
         "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


if __name__ == "__main__":
    main()
