"""Training batches of ``pretrain_tiny.py``: rendered pages with their questions and the dense
per-patch and per-latent character targets, ink-dense crops, questions about a page's text, and
lookup questions about random strings (as text, or laid into the latent cells)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from PIL import Image

from row_questions import PRECEDES, READ_ON, lookup_sample, visual_rows
from tiny_model import page_position_ids


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
        self.split = args.latents_per_patch  # anchored latents side by side in each patch

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
        return self.text_encode([self.text_turn(*lookup_sample(rng, length, back=self.args.lookup_back))
                                 for _ in range(n)])

    def packed_lookup_batch(self, n: int, length: int, pack: str, rng: random.Random) -> dict:
        """``n`` lookup questions (``lookup_sample``) whose string is the page: its characters fill
        the latent cells row by row, ``pack`` characters to a cell (``CellPacking``: ``K``, ``LO-HI``
        or the weights ``W0/W1/...`` of 0, 1, ... characters, drawn per cell; an empty cell is a
        blank token, as between a page's words), and the image tokens are then ``OracleTokens`` of
        these cells (``latent_targets``). With one character to a cell the oracle token is the
        character's own embedding, the text lookup the model already does; packing more characters
        into a cell, as a page's latent holds them, is the step from there to reading visual tokens."""
        packing = CellPacking.parse(pack)
        cells = self.gw * self.gh
        if length > cells * packing.mean or not 1 <= packing.largest <= self.args.latent_slots:
            raise ValueError(f"--packed-schedule: {length} characters, {pack} to a cell, do not fit "
                             f"{cells} cells of {self.args.latent_slots} slots")
        samples = [lookup_sample(rng, length, back=self.args.lookup_back) for _ in range(n)]
        texts = [self.processor.apply_chat_template(self.conversation([(q, a)])) for _, q, a in samples]
        tiny = Image.new("RGB", (self.patch, self.patch), "white")  # only its token count is used
        enc = self.processor(text=texts, images=[[tiny]] * n, return_tensors="pt", padding=True)
        out = {k: enc[k] for k in ("input_ids", "attention_mask")}
        out["labels"] = self.labels_for(enc["input_ids"])
        targets = torch.zeros((n, cells, self.args.latent_slots), dtype=torch.long)
        for b, (context, _, _) in enumerate(samples):
            at = cell = 0
            while at < len(context):
                if cell == cells:
                    raise ValueError(f"--packed-schedule: {length} characters, {pack} to a cell, ran out "
                                     f"of the {cells} cells; give fewer characters or fewer empty cells")
                chunk = context[at : at + packing.draw(rng)]
                targets[b, cell, : len(chunk)] = torch.tensor([self.char_id(c) for c in chunk], dtype=torch.long)
                at += len(chunk)
                cell += 1
        out["latent_targets"] = targets
        return out

    def text_turn(self, context: str, question: str, answer: str) -> str:
        return self.processor.apply_chat_template(self.conversation([(context + "\n" + question, answer)], image=False))

    def text_encode(self, texts: list) -> dict:
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = dict(enc)
        out["labels"] = self.labels_for(enc["input_ids"])
        return out

    def cell_spans(self, n: int, cells: int, split: int = 1) -> list:
        """Patch range ``[a, b)`` along one axis for each of ``cells`` latent cells on a page ``n``
        patches long. ``anchored``: cell ``i`` is patch ``i // split`` while the page fits the grid
        (``split`` cells share a patch, each holding its own part of it; a cell past the page's
        edge gets no patch); otherwise, and in ``stretched`` layout, the cells divide the page
        evenly."""
        if self.args.latent_layout == "anchored" and n * split <= cells:
            return [(i // split, i // split + 1) if i < n * split else (0, 0) for i in range(cells)]
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
                for c, (c0, c1) in enumerate(self.cell_spans(rw, self.gw, self.split)):
                    mask[b, r, c, r0:r1, c0:c1] = True
        return mask.view(B, self.gh * self.gw, nh * nw)

    def make(self, pages: list, turns: int, rng: random.Random, with_text: bool = True) -> dict:
        texts, images = [], []
        for p in pages:
            # The long transcription ("Read on from ...") is always one of the turns: it is the densest
            # reading target of the page. So are the questions --precede adds, which are few.
            kept = [x for x in p.qa if x[0].startswith(READ_ON)][:1] + [x for x in p.qa if x[0].startswith(PRECEDES)]
            kept = kept[:turns]
            rest = [x for x in p.qa if not x[0].startswith((READ_ON, PRECEDES))]
            qa = rng.sample(rest, min(turns - len(kept), len(rest))) + kept
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
                col_anchored = self.args.latent_layout == "anchored" and rw * self.split <= self.gw
                if (row_anchored and pr >= rh) or (col_anchored and pc >= rw):
                    continue  # in a partial patch at the page's edge, which the encoder drops
                gr = pr if row_anchored else min(int(y / h * self.gh), self.gh - 1)
                gc = int(x * self.split // self.patch) if col_anchored else min(int(x / w * self.gw), self.gw - 1)
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


@dataclass(frozen=True)
class CellPacking:
    """Characters per cell of a packed lookup: ``K`` (always K), ``LO-HI`` (uniform), or
    ``W0/W1/...`` (K characters with weight ``WK``; K = 0 is an empty cell)."""

    sizes: tuple
    weights: tuple = ()  # empty: uniform over sizes

    @classmethod
    def parse(cls, pack: str) -> "CellPacking":
        if "/" in pack:
            weights = tuple(float(w) for w in pack.split("/"))
            if weights[0] >= sum(weights):
                raise ValueError(f"--packed-schedule: {pack} gives no cell a character")
            return cls(tuple(range(len(weights))), weights)
        lo, _, hi = pack.partition("-")
        return cls(tuple(range(int(lo), int(hi or lo) + 1)))

    @property
    def largest(self) -> int:
        return self.sizes[-1]

    @property
    def mean(self) -> float:
        weights = self.weights or (1.0,) * len(self.sizes)
        return sum(k * w for k, w in zip(self.sizes, weights)) / sum(weights)

    def draw(self, rng: random.Random) -> int:
        # The uniform forms draw with randint, as before weights existed: same stream, same batches.
        if self.weights:
            return rng.choices(self.sizes, self.weights)[0]
        return rng.randint(self.sizes[0], self.sizes[-1])


def schedule_at(schedule: str, step: int) -> str:
    """The value a ``VALUE:STEPS,...`` schedule gives ``step`` ("" past its end)."""
    for part in filter(None, schedule.split(",")):
        value, steps = part.rsplit(":", 1)
        if step < int(steps):
            return value
        step -= int(steps)
    return ""


def packed_at(schedule: str, step: int, default_length: int) -> tuple:
    """``(PACK, LENGTH)`` that ``--packed-schedule`` (``PACK[@LENGTH]:STEPS,...``) gives ``step``;
    ``("", 0)`` past its end."""
    pack, _, length = schedule_at(schedule, step).partition("@")
    return pack, (int(length or default_length) if pack else 0)


def lookup_length(schedule: str, step: int) -> int:
    """The string length ``--lookup-schedule`` gives ``step`` (0: past the schedule)."""
    return int(schedule_at(schedule, step) or 0)
