"""Pre-train ``doctune-tiny`` to read synthetic business documents.

Starts from the random-weight checkpoint of ``scripts/build_tiny.py`` and trains it, on CPU, to
answer reading questions about rendered pages. The target domain of the demo (``invoice``) is
never trained on (a diagnostic run with ``--train-on-target`` excepted); it is only evaluated
zero-shot, for information.

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

This file holds a stage's loop and saving. Its options are in ``pretrain_options.py``, the
batches are built in ``tiny_batches.py``, the model pieces and losses are in ``tiny_model.py``,
and the held-out evaluation is in ``tiny_eval.py``; the pages are drawn in ``reading_pages.py``
and the questions about their text rows in ``row_questions.py``.

Questions: each page's own (label/value, table cells, "Transcribe the line that starts with ..."),
plus "What follows "<first words of a row>"?" and one long "Read on from ..." transcription
(``row_questions.follow_questions``), which every page gets as one of its turns. With
``--all-rows`` a synth page also asks about every line-item and transaction cell (row by its
name, column by the question's wording), where a document's own questions keep three. With
``--precede N`` every page also asks N times "What precedes "<words of a row>"?", answered by the
row's start before them (``row_questions.precede_questions``), always among its turns.

Initialisation (``init_model``): perceiver latents random (built from a config they are all ones,
so every latent is identical), text embeddings with std 1 so text tokens have the unit RMS the
perceiver's final RMSNorm gives the visual tokens.

The committed ``doctune-tiny`` was made in stages, each continuing from the last. The exact chain
of commands is in ``docs/pretrain.md``; every command and its output is in
``src/doctune/assets/doctune-tiny-pretrain.log``.
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
import pretrain_options  # noqa: E402
from reading_pages import sample_pages, synth_available  # noqa: E402
from stage_files import HEADS, SEEDS, beside, data_seeds, json_logger, save_atomic  # noqa: E402
from tiny_batches import Batcher, lookup_length, packed_at  # noqa: E402
from tiny_eval import eval_sets, evaluate, probe_batch  # noqa: E402
from tiny_model import (  # noqa: E402
    OracleTokens, crop_features, fresh_connector, grow_perceiver_layers, grow_text_layers, grow_vision_layers,
    image_features, init_model, lm_loss, patch_rows_cols, resize_latents, resize_patches, slot_head)


def add_metrics(metrics: dict, values: dict, prefix: str = "") -> None:
    """Append this step's ``values`` to the running lists of ``metrics`` (averaged when logged)."""
    for k, v in values.items():
        metrics.setdefault(prefix + k, []).append(v)


# ----------------------------------------------------------------------------------------------
# One step's losses
# ----------------------------------------------------------------------------------------------


def vision_losses(model, heads, batcher, batch, args, captured, rng) -> tuple:
    """The vision side's losses on this step's pages (none on a text-only step, or when the
    language model reads only oracle tokens): ``(losses, metrics, lat, ideal)``, where ``lat`` are
    the connector's visual tokens and ``ideal`` the oracle's, for the reading losses."""
    losses, metrics = {}, {}
    oracle_only = args.oracle_lm >= 1 or batch is None
    lat = ideal = None
    if not oracle_only:
        vis, lat = image_features(model, batch, args.freeze_vision)
    if batch is not None and (args.oracle_lm > 0 or args.oracle_weight > 0):
        ideal = heads["oracle"](batch["latent_targets"])
    if oracle_only:
        return losses, metrics, lat, ideal
    if args.oracle_weight > 0:
        losses["oracle"] = F.mse_loss(lat, ideal)
        add_metrics(metrics, {"oracle_cos": float(F.cosine_similarity(lat.detach(), ideal, dim=-1).mean())})
    if args.route_weight > 0 and captured:
        rm = batch["route_mask"].unsqueeze(1).float()  # B 1 L P
        mass = torch.stack([(a[..., : rm.size(-1)] * rm).sum(-1) for a in captured])  # layers B H L
        routed = (rm.sum(-1) > 0).expand_as(mass[0]).expand_as(mass)  # latents past the page: free
        losses["route"] = -(mass[routed] + 1e-6).log().mean()
        add_metrics(metrics, {"route_mass": float(mass[routed].detach().mean())})
    if args.patch_weight > 0:
        losses["patch"], hit = slot_head(heads["patch"], vis, batch["patch_targets"], args.patch_slots,
                                         args.none_weight)
        add_metrics(metrics, {"patch_acc": hit})
    if args.pos_weight > 0 and not args.freeze_vision:
        rows, cols = patch_rows_cols(batch["pixel_attention_mask"][:, 0], args.patch_size)
        pl = heads["pos"](vis).view(*vis.shape[:2], 2, -1)
        real = rows >= 0
        losses["pos"] = (F.cross_entropy(pl[..., 0, :][real], rows[real])
                         + F.cross_entropy(pl[..., 1, :][real], cols[real])) / 2
        hit = (pl[..., 0, :].argmax(-1) == rows) & (pl[..., 1, :].argmax(-1) == cols)
        add_metrics(metrics, {"pos_acc": float(hit[real].float().mean())})
    if args.latent_weight > 0:
        losses["latent"], hit = slot_head(heads["latent"], lat, batch["latent_targets"], args.latent_slots,
                                          args.none_weight)
        add_metrics(metrics, {"latent_acc": hit})
    if args.crop_weight > 0 and args.crops_per_page > 0:
        cx, ctg, cpos = batcher.crops(batch, args.crops_per_page, args.crop_size[0], args.crop_size[1], rng)
        cvis = crop_features(model.model.vision_model, cx, cpos)
        losses["crop"], hit = slot_head(heads["patch"], cvis, ctg, args.patch_slots, args.none_weight)
        add_metrics(metrics, {"crop_acc": hit})
    return losses, metrics, lat, ideal


def reading_losses(model, heads, batcher, batch, pages, lat, ideal, args, step, rng) -> tuple:
    """The language model's answer losses: on the pages (through the connector's tokens, or for
    ``--oracle-lm`` of them the oracle's), and on the text, lookup and packed-lookup batches the
    schedules ask for this step. ``(losses, metrics)``."""
    losses, metrics = {}, {}
    if step >= args.lm_start and args.lm_weight > 0 and batch is not None:
        lm_in = ideal if lat is None else lat
        if lat is not None and args.oracle_lm > 0:
            use = torch.tensor([rng.random() < args.oracle_lm for _ in pages])
            lm_in = torch.where(use[:, None, None], ideal, lat)
        losses["lm"], stats = lm_loss(model, batch, lm_in)
        add_metrics(metrics, stats)
    length = lookup_length(args.lookup_schedule, step)
    if length:
        losses["lookup"], stats = lm_loss(model, batcher.lookup_batch(args.lookup_batch, length, rng))
        add_metrics(metrics, {**stats, "len": length}, "lookup_")
    pack, length = packed_at(args.packed_schedule, step, args.packed_length)
    if pack:
        pb = batcher.packed_lookup_batch(args.packed_batch, length, pack, rng)
        cells = pb["latent_targets"] > 0
        losses["packed"], stats = lm_loss(model, pb, heads["oracle"](pb["latent_targets"]))
        add_metrics(metrics, {**stats, "len": length, "chars": float(cells.sum() / cells.any(-1).sum())}, "packed_")
    if args.text_per_page > 0 and pages:
        losses["text"], stats = lm_loss(model, batcher.text_batch(pages, args.text_per_page, rng, args.text_rows))
        add_metrics(metrics, stats, "text_")
    return losses, metrics


def weighted_total(losses: dict, args) -> torch.Tensor:
    """The step's loss: each loss times its ``--*-weight`` (lookups and packed lookups weigh 1)."""
    weights = {"oracle": args.oracle_weight, "text": args.text_weight, "patch": args.patch_weight,
               "latent": args.latent_weight, "route": args.route_weight, "crop": args.crop_weight,
               "lm": args.lm_weight, "pos": args.pos_weight}
    return sum(weights.get(k, 1.0) * v for k, v in losses.items())


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    return pretrain_options.parse_args(argv, __doc__)


def load_model(args) -> tuple:
    """The stage's starting model and processor: ``--init-from`` (a plain checkpoint; with
    ``--fresh-connector`` or ``--connector-from`` its connector replaced), else ``build_tiny``'s
    random-weight model with this stage's sizes, initialised by ``init_model``."""
    from transformers import AutoProcessor, Idefics2ForConditionalGeneration

    n_latents = args.latent_grid[0] * args.latent_grid[1]
    if args.init_from:
        processor = AutoProcessor.from_pretrained(args.init_from)
        model = Idefics2ForConditionalGeneration.from_pretrained(args.init_from)
        if args.fresh_connector:
            fresh_connector(model, processor, n_latents, args)
        else:
            resize_latents(model, processor, n_latents, args)
        if args.connector_from:
            other = Idefics2ForConditionalGeneration.from_pretrained(args.connector_from)
            model.model.connector.load_state_dict(other.model.connector.state_dict())
        grow_text_layers(model, args.grow_text_layers)
        grow_vision_layers(model, args.grow_vision_layers)
        grow_perceiver_layers(model, args.grow_perceiver_layers)
        if args.patch_size:
            resize_patches(model, processor, args.patch_size)
        vision = model.config.vision_config
        if args.longest_edge not in (None, vision.image_size):
            raise SystemExit(f"--longest-edge {args.longest_edge}: the model's pages are {vision.image_size} "
                             f"pixels on their longest edge with {vision.patch_size}-px patches; pass "
                             f"--longest-edge {vision.image_size} or leave it out")
        args.patch_size, args.longest_edge = vision.patch_size, vision.image_size
        return model, processor
    sizes = build_tiny.Sizes(longest_edge=args.longest_edge, patch_size=args.patch_size, image_seq_len=n_latents,
                             perceiver_depth=args.perceiver_depth, perceiver_kv_heads=args.perceiver_kv_heads)
    init_dir = args.output.parent / (args.output.name + "-init")
    build_tiny.build(init_dir, args.seed, sizes)
    processor = AutoProcessor.from_pretrained(init_dir)
    model = Idefics2ForConditionalGeneration.from_pretrained(init_dir)
    shutil.rmtree(init_dir, ignore_errors=True)
    init_model(model, args)
    return model, processor


def capture_routing(model, args) -> list:
    """For the routing prior: the perceiver's first ``--route-layers`` layers attend in eager mode,
    and each forward appends their attention weights to the returned list (cleared every step)."""
    captured = []
    if args.route_weight > 0:
        resampler = model.model.connector.perceiver_resampler
        resampler.config._attn_implementation = "eager"
        for layer in resampler.layers[: args.route_layers]:
            layer.self_attn.register_forward_hook(lambda mod, inp, out: captured.append(out[1]))
    return captured


def build_heads(model, processor, args, log) -> torch.nn.ModuleDict:
    """The auxiliary heads (patch and latent characters, patch position, oracle tokens), with the
    saved ones of ``--init-from`` (and the latent and oracle heads of ``--connector-from``) where
    their shapes still fit."""
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
        if source and beside(source, HEADS).exists():
            saved = torch.load(beside(source, HEADS), weights_only=True)
            own = heads.state_dict()
            kept = {k: v for k, v in saved.items()
                    if k in own and own[k].shape == v.shape and (names is None or k.split(".")[0] in names)}
            heads.load_state_dict(kept, strict=False)
            log({"heads_loaded": sorted({k.split(".")[0] for k in kept}), "from": str(source)})
    return heads


def build_optimizer(model, heads, args) -> torch.optim.Optimizer:
    """AdamW with one learning rate per part (vision, connector, text; each head trains with the
    part it reads); ``--freeze-vision`` leaves the vision encoder out."""
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
    return torch.optim.AdamW([{"params": ps, "lr": lrs[k], "base_lr": lrs[k], "name": k} for k, ps in groups.items()],
                             weight_decay=args.weight_decay, betas=(0.9, 0.98))


def lr_multiplier(step: int, est_steps: int, args) -> float:
    """Warmup over ``--warmup`` steps, then cosine down to ``--min-lr-frac`` at ``est_steps``."""
    prog = min(1.0, step / max(1, est_steps))
    return min(1.0, (step + 1) / args.warmup) * (
        args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    log = json_logger(args.log, args.log_mode)

    log({"command": "PYTHONPATH=src python " + " ".join([sys.argv[0]] + sys.argv[1:]) if argv is None else str(argv),
         "args": {k: str(v) for k, v in vars(args).items()}, "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    model, processor = load_model(args)
    model.train()
    if args.compile:  # in place, so the saved weights keep their plain names
        # The language model only: a compiled vision encoder failed in its backward pass (a stride
        # assertion in inductor's code for the patch embedding, torch 2.13).
        model.model.text_model.compile(dynamic=True)
    captured = capture_routing(model, args)
    heads = build_heads(model, processor, args, log)
    opt = build_optimizer(model, heads, args)
    batcher = Batcher(processor, args)
    use_synth = synth_available() and args.synth_frac > 0
    log({"synth_available": use_synth, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)})
    sets = eval_sets(args)
    probe = probe_batch(batcher, args)
    log({"eval_sets": {k: len(v) for k, v in sets.items()}})

    def run_eval() -> dict:
        with torch.compiler.set_stance("force_eager"):  # with --compile, generation would recompile for its shapes
            return evaluate(model, processor, heads["oracle"], batcher, sets, probe)

    if args.eval_only:
        log({"step": 0, **run_eval()})
        return
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    beside(args.output, SEEDS).write_text(json.dumps(data_seeds(args, log)))

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
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_multiplier(step, est_steps, args)
        captured.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            losses, metrics, lat, ideal = vision_losses(model, heads, batcher, batch, args, captured, rng)
            more, stats = reading_losses(model, heads, batcher, batch, pages, lat, ideal, args, step, rng)
        losses.update(more)
        metrics.update(stats)
        total = weighted_total(losses, args)
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
            log({"step": step, **run_eval(),
                 "eval_s": round(time.time() - t0, 1)})
            t_log += time.time() - t0
            t_start += time.time() - t0  # evaluation does not eat the training budget
    save_atomic(model, processor, args.output, heads)
    final = run_eval()
    log({"step": step, "final_eval": final.pop("eval"), **final, "samples_seen": seen,
         "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


if __name__ == "__main__":
    main()
