"""Plot the pre-training log of ``doctune-tiny``: one picture of every stage, one after another.

    python scripts/plot_pretrain.py [--log src/doctune/assets/doctune-tiny-pretrain.log] \
        [--output docs/pretrain.png]

Panels, against training steps counted across all runs (a grey line where a run starts):
language-model loss per answer character (on pages, on their text alone, on lookup strings
(as text, and packed into visual tokens));
per-patch (encoder) and per-latent (perceiver output) character accuracy and the visual tokens'
cosine to the oracle's; held-out ANLS (mean of the pre-training kinds, through the connector's
visual tokens and through the oracle's, and invoices zero-shot).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

from reading_pages import TARGET_KIND

ROOT = Path(__file__).resolve().parents[1]
MIN_EVAL = 8  # questions per kind below which a held-out evaluation is not plotted
SERIES = {"lm": ("LM loss", 0), "text": ("LM loss, questions on page text", 0),
          "lookup": ("LM loss, lookup in random strings", 0),
          "packed": ("LM loss, lookup in strings packed into oracle visual tokens", 0), "patch_acc": ("per-patch", 1),
          "crop_acc": ("per-patch (crops)", 1), "latent_acc": ("per-latent", 1),
          "oracle_cos": ("visual tokens vs oracle (cosine)", 1)}


EVALS = {"anls": "pre-training kinds (mean)", TARGET_KIND: f"{TARGET_KIND} (never trained on)",
         "oracle": "pre-training kinds (mean), through the oracle's visual tokens"}


def counted(scores: dict | None) -> bool:
    """Whether an evaluation is worth plotting: runs that left evaluation for later
    (``--eval-pages 1``) score one question per kind, which is noise."""
    return bool(scores) and min(v.get("n", MIN_EVAL) for v in scores.values()) >= MIN_EVAL


def kinds_mean(scores: dict) -> float:
    """Mean ANLS over the pre-training kinds (the held-out invoices left out)."""
    kinds = [v["anls"] for k, v in scores.items() if k != TARGET_KIND]
    return sum(kinds) / len(kinds)


def read_runs(log: Path) -> list:
    """The log's records, split into runs at each ``command`` record."""
    runs = []
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "command" in record and "args" in record:
            runs.append([])
        if runs:
            runs[-1].append(record)
    return runs


def plot(log: Path, output: Path) -> Path:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    points = {k: [] for k in SERIES} | {k: [] for k in EVALS}
    offset = 0
    for run in read_runs(log):
        for series in points.values():
            series.append((offset, float("nan")))  # no line joins two runs
        axes[0].axvline(offset, color="0.8", linewidth=0.8)
        axes[2].axvline(offset, color="0.8", linewidth=0.8)
        last = 0
        for record in run:
            step = record.get("step")
            if step is None:
                continue
            last = max(last, step)
            for key in SERIES:
                if key in record:
                    points[key].append((offset + step, record[key]))
            scores = record.get("eval") or record.get("final_eval")
            if counted(scores):
                points["anls"].append((offset + step, kinds_mean(scores)))
                if TARGET_KIND in scores:
                    points[TARGET_KIND].append((offset + step, scores[TARGET_KIND]["anls"]))
            if counted(record.get("eval_oracle")):
                points["oracle"].append((offset + step, kinds_mean(record["eval_oracle"])))
        offset += last
    for key, (label, panel) in SERIES.items():
        if any(v == v for _, v in points[key]):
            axes[panel].plot(*zip(*points[key]), linewidth=0.8, label=label)
    for key, label in EVALS.items():
        if any(v == v for _, v in points[key]):
            axes[2].plot(*zip(*points[key]), marker="o", markersize=3, linewidth=0.8, label=label,
                         linestyle="--" if key == "oracle" else "-")
    axes[0].set(ylabel="LM loss (nats/char)", title="doctune-tiny pre-training, all stages (grey: a run starts)")
    axes[1].set(ylabel="accuracy / cosine", ylim=(0, 1))
    axes[2].set(ylabel="held-out ANLS", xlabel="training step, counted across runs", ylim=(0, 1))
    for axis in axes:
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper left")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, default=ROOT / "src/doctune/assets/doctune-tiny-pretrain.log")
    parser.add_argument("--output", type=Path, default=ROOT / "docs/pretrain.png")
    args = parser.parse_args()
    print(f"wrote {plot(args.log, args.output)}")


if __name__ == "__main__":
    main()
