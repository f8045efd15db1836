"""Vision-only stage of the ``doctune-tiny`` pre-training: teach the encoder to see glyphs.

Reading starts in the vision encoder. Here only the encoder is trained, on patch-aligned crops of
rendered pages (generic pages and the non-invoice synth kinds, never invoices), with the dense
per-patch character objective of ``pretrain_tiny.py``: a linear head on every patch output
predicts the characters whose centres fall in that patch, in reading order. Without the
perceiver and the language model a step costs a few milliseconds per crop, so the encoder sees
far more characters per minute than in the full stage.

Pages are rendered into a ring buffer that keeps growing while training runs (a few new pages
every step), so crops rarely repeat. Held-out full pages, invoices included, measure whether
what the encoder learns on crops carries over to whole pages.

The output is a plain checkpoint (only the vision encoder changed; the head is discarded):

    PYTHONPATH=src python scripts/pretrain_vision.py --minutes 30 --output /tmp/vision
    PYTHONPATH=src python scripts/pretrain_tiny.py --init-from /tmp/vision --log-mode a ...

(the exact chain that made the committed checkpoint is in ``docs/pretrain.md``).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_tiny as pt  # noqa: E402
from pretrain_options import ROOT  # noqa: E402
import reading_pages  # noqa: E402
from stage_files import json_logger, save_atomic  # noqa: E402
from tiny_batches import Batcher, densest_crop  # noqa: E402
from tiny_model import crop_features, image_features, page_position_ids, slot_accuracy, slot_loss  # noqa: E402


class PageCache:
    """Resized, normalised pages (float16, real area only) with their per-patch targets."""

    def __init__(self, batcher: Batcher, patch: int, capacity: int):
        self.batcher, self.patch, self.capacity = batcher, patch, capacity
        self.pixels: list = []
        self.targets: list = []
        self.next = 0

    def add(self, pages: list, rng: random.Random) -> None:
        batch = self.batcher.make(pages, 1, rng)
        p = self.patch
        pv, pam, tg = batch["pixel_values"][:, 0], batch["pixel_attention_mask"][:, 0], batch["patch_targets"]
        B, _, H, W = pv.shape
        tg = tg.view(B, H // p, W // p, -1)
        for b in range(B):
            rh, rw = int(pam[b, :, 0].sum()) // p, int(pam[b, 0, :].sum()) // p
            item = (pv[b, :, : rh * p, : rw * p].half(), tg[b, :rh, :rw].clone())
            if len(self.pixels) < self.capacity:
                self.pixels.append(item[0])
                self.targets.append(item[1])
            else:
                self.pixels[self.next], self.targets[self.next] = item
                self.next = (self.next + 1) % self.capacity

    def crops(self, n: int, rows: int, cols: int, rng: random.Random, per_side: int):
        """``n`` crops, each the most ink-dense of a few random positions on a random page, with
        the position ids their patches have in the whole page."""
        p = self.patch
        xs, ts, ps = [], [], []
        while len(xs) < n:
            i = rng.randrange(len(self.pixels))
            tg = self.targets[i]
            rh, rw = tg.shape[:2]
            if rh < rows or rw < cols:
                continue
            r0, c0 = densest_crop(tg[..., 0] > 0, rows, cols, rng)
            xs.append(self.pixels[i][:, r0 * p : (r0 + rows) * p, c0 * p : (c0 + cols) * p].float())
            ts.append(tg[r0 : r0 + rows, c0 : c0 + cols].reshape(rows * cols, -1))
            ps.append(page_position_ids(rh, rw, r0, c0, rows, cols, per_side))
        return torch.stack(xs), torch.stack(ts), torch.stack(ps)


    def pages(self, n: int, rng: random.Random):
        """``n`` whole cached pages, padded to the largest, with their patch masks and targets."""
        picks = [rng.randrange(len(self.pixels)) for _ in range(n)]
        shapes = [self.targets[i].shape for i in picks]
        H, W, K = max(s[0] for s in shapes), max(s[1] for s in shapes), shapes[0][2]
        p = self.patch
        x = torch.zeros(n, 3, H * p, W * p)
        mask = torch.zeros(n, H, W, dtype=torch.bool)
        tg = torch.full((n, H, W, K), -100, dtype=torch.long)
        for b, i in enumerate(picks):
            rh, rw = shapes[b][:2]
            x[b, :, : rh * p, : rw * p] = self.pixels[i].float()
            mask[b, :rh, :rw] = True
            tg[b, :rh, :rw] = self.targets[i]
        return x, mask, tg.view(n, H * W, K)


@torch.no_grad()
def page_accuracy(model, head, batcher: Batcher, pages: list, slots: int, vocab: int) -> float:
    """Per-patch character accuracy on whole held-out pages (what the full model will see)."""
    model.eval()
    right = total = 0
    for i in range(0, len(pages), 8):
        batch = batcher.make(pages[i : i + 8], 1, random.Random(0))
        vis, _ = image_features(model, batch)
        r, t = slot_accuracy(head(vis).view(*vis.shape[:2], slots, vocab), batch["patch_targets"])
        right, total = right + r, total + t
    model.train()
    return round(right / max(total, 1), 4)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init-from", type=Path, default=ROOT / "src/doctune/assets/doctune-tiny")
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--log", type=Path, default=ROOT / "src/doctune/assets/doctune-tiny-pretrain.log")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--max-steps", type=int, default=None, help="stop here even with budget left")
    ap.add_argument("--crops", type=int, default=48, help="crops per step")
    ap.add_argument("--full-pages", type=int, default=4, help="whole pages per step")
    ap.add_argument("--crop-size", type=int, nargs=2, default=[4, 8], metavar=("ROWS", "COLS"))
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--decay-frac", type=float, default=0.3, help="last share of the budget: cosine to 10%%")
    ap.add_argument("--first-pages", type=int, default=800, help="pages rendered before the first step")
    ap.add_argument("--pages-per-step", type=int, default=2, help="new pages rendered every step")
    ap.add_argument("--capacity", type=int, default=8000, help="pages kept (oldest replaced)")
    ap.add_argument("--patch-slots", type=int, default=6)
    ap.add_argument("--none-weight", type=float, default=0.2)
    ap.add_argument("--synth-frac", type=float, default=0.5)
    ap.add_argument("--kinds", nargs="+", default=["receipt", "purchase_order", "form", "bank_statement"])
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=25)
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    log = json_logger(args.log, "a")

    log({"stage": "vision", "command": "PYTHONPATH=src python " + " ".join(sys.argv),
         "args": {k: str(v) for k, v in vars(args).items()}, "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    from transformers import AutoProcessor, Idefics2ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(args.init_from)
    model = Idefics2ForConditionalGeneration.from_pretrained(args.init_from)
    model.train()
    # The full stage's settings (its defaults, so the Batcher finds every one it reads), with this
    # stage's sizes; one latent, whose targets go unused.
    bargs = pt.parse_args(["--patch-size", str(model.config.vision_config.patch_size),
                           "--patch-slots", str(args.patch_slots),
                           "--longest-edge", str(model.config.vision_config.image_size),
                           "--latent-slots", "1", "--latent-grid", "1", "1",
                           "--synth-frac", str(args.synth_frac), "--kinds", *args.kinds])
    batcher = Batcher(processor, bargs)
    V = len(processor.tokenizer)
    vision = model.model.vision_model
    head = torch.nn.Linear(model.config.vision_config.hidden_size, args.patch_slots * V)
    params = list(vision.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))

    held_rng = random.Random(424242)
    held = {"generic": [reading_pages.render_generic(3_000_000 + i) for i in range(8)]}
    for kind in args.kinds + [reading_pages.TARGET_KIND]:
        held[kind] = [reading_pages.synth_page(kind, 3_100_000 + i, held_rng) for i in range(8)]

    cache = PageCache(batcher, bargs.patch_size, args.capacity)
    t0 = time.time()
    for _ in range(0, args.first_pages, 16):
        cache.add(reading_pages.sample_pages(bargs, rng, 16, True), rng)
    log({"cache_pages": len(cache.pixels), "render_s": round(time.time() - t0, 1)})

    def evaluate() -> dict:
        return {k: page_accuracy(model, head, batcher, v, args.patch_slots, V) for k, v in held.items()}

    log({"step": 0, "page_acc": evaluate()})
    budget = args.minutes * 60
    t_start = t_log = time.time()
    step, right, total, losses = 0, 0, 0, []
    page_right, page_total = 0, 0
    rows, cols = args.crop_size
    while time.time() - t_start < budget and (args.max_steps is None or step < args.max_steps):
        prog = (time.time() - t_start) / budget
        decay = min(1.0, max(0.0, (prog - (1 - args.decay_frac)) / args.decay_frac))
        mult = min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * decay)))
        for g in opt.param_groups:
            g["lr"] = args.lr * mult
        cache.add(reading_pages.sample_pages(bargs, rng, args.pages_per_step, True), rng)
        x, tg, pos = cache.crops(args.crops, rows, cols, rng, vision.embeddings.num_patches_per_side)
        logits = head(crop_features(vision, x, pos)).view(x.size(0), rows * cols, args.patch_slots, V)
        loss = slot_loss(logits, tg, args.none_weight)
        if args.full_pages:
            # Whole pages too: crops favour dense text, pages hold the sparse values and headings.
            px, pmask, ptg = cache.pages(args.full_pages, rng)
            pvis = vision(pixel_values=px, patch_attention_mask=pmask).last_hidden_state
            plogits = head(pvis).view(px.size(0), -1, args.patch_slots, V)
            loss = loss + slot_loss(plogits, ptg, args.none_weight)
            r, t = slot_accuracy(plogits.detach(), ptg)
            page_right, page_total = page_right + r, page_total + t
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        r, t = slot_accuracy(logits.detach(), tg)
        right, total = right + r, total + t
        losses.append(float(loss.detach()))
        if step % args.log_every == 0:
            now = time.time()
            log({"step": step, "loss": round(sum(losses) / len(losses), 4), "crop_acc": round(right / max(total, 1), 4),
                 "train_page_acc": round(page_right / max(page_total, 1), 4),
                 "lr": round(args.lr * mult, 6), "crops_per_s": round(args.log_every * args.crops / (now - t_log), 1),
                 "cache_pages": len(cache.pixels), "elapsed_min": round((now - t_start) / 60, 2)})
            right, total, losses, t_log = 0, 0, [], time.time()
            page_right, page_total = 0, 0
        if step % args.save_every == 0:
            save_atomic(model, processor, args.output)
        if step % args.eval_every == 0:
            te = time.time()
            log({"step": step, "page_acc": evaluate()})
            t_start += time.time() - te
            t_log += time.time() - te
    save_atomic(model, processor, args.output)
    log({"step": step, "final_page_acc": evaluate(), "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


if __name__ == "__main__":
    main()
