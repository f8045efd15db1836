"""The options of ``scripts/pretrain_tiny.py`` (its ``--help`` lists them by group)."""

from __future__ import annotations

import argparse
from pathlib import Path

import build_tiny
from reading_pages import TARGET_KIND

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None, description: str | None = None) -> argparse.Namespace:
    """The options of ``pretrain_tiny.py``, checked against each other."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    run = ap.add_argument_group("where the stage writes, how long it runs, on what")
    run.add_argument("--output", type=Path, default=ROOT / "src/doctune/assets/doctune-tiny")
    run.add_argument("--log", type=Path, default=ROOT / "src/doctune/assets/doctune-tiny-pretrain.log")
    run.add_argument("--log-mode", default="w", choices=["w", "a"], help="a: append (later stage of a chain)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--threads", type=int, default=2)
    run.add_argument("--bf16", action="store_true",
                     help="forward passes under bf16 autocast (weights, optimizer and losses stay fp32): "
                          "on CPUs with AMX a bf16 matmul is many times faster than an fp32 one")
    run.add_argument("--compile", action="store_true",
                     help="run the language model through torch.compile (inductor, dynamic shapes): "
                          "stages that train it ran about 1.25x the samples a second after 80 s of compiling")
    run.add_argument("--minutes", type=float, default=68.0, help="wall-clock training budget")
    run.add_argument("--max-steps", type=int, default=100000)
    optimiser = ap.add_argument_group("steps, learning rates and their schedule")
    optimiser.add_argument("--batch-size", type=int, default=8)
    optimiser.add_argument("--turns", type=int, default=3, help="question/answer turns per page")
    optimiser.add_argument("--lr", type=float, default=1.5e-3)
    optimiser.add_argument("--lr-vision", type=float, default=None, help="default: --lr")
    optimiser.add_argument("--lr-connector", type=float, default=None, help="default: --lr")
    optimiser.add_argument("--lr-text", type=float, default=None, help="default: --lr")
    optimiser.add_argument("--freeze-vision", action="store_true",
                           help="vision encoder without gradients (a connector-only stage: much faster steps)")
    optimiser.add_argument("--weight-decay", type=float, default=0.01)
    optimiser.add_argument("--warmup", type=int, default=30)
    optimiser.add_argument("--schedule-steps", type=int, default=None,
                           help="cosine horizon in steps (default: estimated from --minutes and the measured speed)")
    optimiser.add_argument("--min-lr-frac", type=float, default=0.1)
    losses = ap.add_argument_group("what is trained on, and how much each loss weighs")
    losses.add_argument("--lm-weight", type=float, default=1.0)
    losses.add_argument("--lm-start", type=int, default=200, help="steps of auxiliary losses only before the LM loss")
    losses.add_argument("--oracle-lm", type=float, default=0.0,
                        help="share of pages whose language-model input is the oracle visual tokens (their "
                             "characters, embedded; see OracleTokens) instead of the connector's; 1 leaves the "
                             "vision encoder and connector out of the step")
    losses.add_argument("--oracle-weight", type=float, default=0.0,
                        help="the connector's output regressed onto the oracle visual tokens (mean squared error)")
    losses.add_argument("--patch-weight", type=float, default=1.0)
    losses.add_argument("--latent-weight", type=float, default=1.0)
    losses.add_argument("--pos-weight", type=float, default=0.0,
                        help="vision outputs predict their patch row and column: keeps the position the "
                             "perceiver needs to route each latent to its own patches")
    losses.add_argument("--crop-weight", type=float, default=1.0, help="patch-character loss on ink-dense crops")
    losses.add_argument("--crops-per-page", type=int, default=12)
    losses.add_argument("--crop-size", type=int, nargs=2, default=[4, 8], metavar=("ROWS", "COLS"), help="in patches")
    losses.add_argument("--route-weight", type=float, default=0.5, help="perceiver attention-to-own-cell prior")
    losses.add_argument("--route-layers", type=int, default=1, help="perceiver layers the routing prior applies to")
    losses.add_argument("--none-weight", type=float, default=0.2, help="weight of empty slots in the auxiliary losses")
    losses.add_argument("--patch-slots", type=int, default=6)
    losses.add_argument("--patch-slot-mode", default="order", choices=["order", "spatial"],
                        help="order: k-th character in the patch; spatial: character centred in sub-cell k")
    losses.add_argument("--latent-slots", type=int, default=6)
    losses.add_argument("--text-per-page", type=int, default=0,
                        help="questions per page asked about the page's text rows instead of its image "
                             "(a text-only batch beside the image batch; Batcher.text_batch)")
    losses.add_argument("--text-rows", type=int, default=8, help="rows of page text in a text-only question")
    losses.add_argument("--text-weight", type=float, default=1.0)
    losses.add_argument("--lookup-schedule", default="",
                        help="LENGTH:STEPS,...: a text-only batch of --lookup-batch lookup questions "
                             "about random strings each step, the strings growing by the schedule (lookup_sample)")
    losses.add_argument("--lookup-batch", type=int, default=32)
    losses.add_argument("--lookup-back", type=float, default=0.0,
                        help="share of the lookups and packed lookups asked backwards: \"What precedes ...?\", "
                             "answered by the characters before the key (lookup_sample)")
    losses.add_argument("--packed-schedule", default="",
                        help="PACK[@LENGTH]:STEPS,...: a batch of --packed-batch lookup questions whose string "
                             "(LENGTH characters, default --packed-length) is laid "
                             "into the latent cells, PACK characters to a cell (K, LO-HI, or W0/W1/... the "
                             "weights of 0, 1, ... characters), and read through "
                             "the oracle visual tokens (Batcher.packed_lookup_batch)")
    losses.add_argument("--packed-length", type=int, default=96, help="string length of the packed lookups")
    losses.add_argument("--packed-batch", type=int, default=16)
    pages = ap.add_argument_group("the training pages and their questions")
    pages.add_argument("--synth-frac", type=float, default=0.5, help="share of pages from doctune.synth kinds")
    pages.add_argument("--kinds", nargs="+", default=["receipt", "purchase_order", "form", "bank_statement"],
                       help="synth kinds of the training pages, drawn uniformly (repeat one to weight it)")
    pages.add_argument("--all-rows", action="store_true",
                       help="training pages ask about every line-item and transaction cell, not three")
    pages.add_argument("--key-anywhere", type=float, default=0.0,
                       help="share of the generic pages' tables whose row names are not in the first column, so "
                            "that some answers lie left of the name (count columns then hold small integers)")
    pages.add_argument("--precede", type=int, default=0,
                       help="this many \"What precedes ...?\" questions on each training page, always among its "
                            "turns, answered by the start of a row before a key (row_questions.precede_questions)")
    pages.add_argument("--train-on-target", action="store_true",
                       help=f"allow the demo's target kind ({TARGET_KIND}) in --kinds: for diagnostics only, such as "
                            "the score a perfect reader reaches after fine-tuning; such a checkpoint is no "
                            "pre-training stage, as the demo must start blind to invoices")
    model = ap.add_argument_group("the starting model, its shape and its surgery")
    model.add_argument("--init-from", type=Path, default=None, help="continue from this plain checkpoint")
    model.add_argument("--connector-from", type=Path, default=None,
                       help="with --init-from: the connector (and the latent and oracle heads) of this "
                            "checkpoint instead, e.g. one trained alongside on the same encoder")
    model.add_argument("--fresh-connector", action="store_true",
                       help="with --init-from: a new connector (--perceiver-depth, --perceiver-kv-heads); "
                            "without --init-from the connector is always new")
    model.add_argument("--grow-text-layers", type=int, nargs="+", default=[], metavar="AFTER",
                       help="with --init-from: insert a language-model layer after each of these layer "
                            "indices, initialised so the model's output is unchanged (grow_text_layers)")
    model.add_argument("--grow-vision-layers", type=int, nargs="+", default=[], metavar="AFTER",
                       help="the same for the vision encoder (grow_vision_layers)")
    model.add_argument("--grow-perceiver-layers", type=int, nargs="+", default=[], metavar="AFTER",
                       help="the same for the connector's perceiver (grow_perceiver_layers)")
    model.add_argument("--perceiver-depth", type=int, default=build_tiny.Sizes.perceiver_depth)
    model.add_argument("--perceiver-kv-heads", type=int, default=build_tiny.Sizes.perceiver_kv_heads)
    model.add_argument("--latent-layout", default="anchored", choices=["stretched", "anchored"],
                       help="stretched: the grid divides every page evenly; anchored: latent (r, c) is "
                            "patch (r, c) on pages that fit the grid (one patch per latent, no mixing)")
    model.add_argument("--latent-grid", type=int, nargs=2, default=[18, 24], metavar=("COLS", "ROWS"))
    model.add_argument("--latents-per-patch", type=int, default=1,
                       help="anchored layout: this many latents side by side per patch, each holding the "
                            "characters of its part of the patch (the grid's COLS counts them all)")
    model.add_argument("--longest-edge", type=int, default=None,
                       help=f"default {build_tiny.Sizes.longest_edge}; with --init-from the checkpoint's "
                            "(after --patch-size resizes it), and a different value is an error")
    model.add_argument("--patch-size", type=int, default=None,
                       help=f"default {build_tiny.Sizes.patch_size}; with --init-from the checkpoint's, and "
                            "another value resizes its patches to this many pixels over the same grid "
                            "(resize_patches), the longest edge growing with them")
    model.add_argument("--latent-init-std", type=float, default=0.02)
    model.add_argument("--text-embed-std", type=float, default=1.0)
    evaluation = ap.add_argument_group("held-out evaluation, logging and checkpoints")
    evaluation.add_argument("--eval-every", type=int, default=150)
    evaluation.add_argument("--eval-pages", type=int, default=16)
    evaluation.add_argument("--eval-only", action="store_true",
                            help="log the held-out evaluation of --init-from (or a fresh model) and stop; "
                                 "writes no checkpoint")
    evaluation.add_argument("--save-every", type=int, default=50)
    evaluation.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args(argv)
    if TARGET_KIND in args.kinds and not args.train_on_target:
        ap.error(f"--kinds {TARGET_KIND}: {TARGET_KIND} is the demo's held-out target kind, never pre-trained "
                 "on (--train-on-target allows it for a diagnostic run)")
    if not args.init_from:  # with it, load_model takes them from the checkpoint
        args.patch_size = args.patch_size or build_tiny.Sizes.patch_size
        args.longest_edge = args.longest_edge or build_tiny.Sizes.longest_edge
    if (args.grow_text_layers or args.grow_vision_layers or args.grow_perceiver_layers) and not args.init_from:
        ap.error("--grow-text-layers, --grow-vision-layers and --grow-perceiver-layers grow a trained "
                 "model; give it --init-from")
    if args.latents_per_patch < 1:
        ap.error(f"--latents-per-patch {args.latents_per_patch}: give 1 or more latents per patch")
    if args.latents_per_patch > 1 and args.latent_layout != "anchored":
        ap.error("--latents-per-patch splits anchored latents; use it with --latent-layout anchored")
    return args
