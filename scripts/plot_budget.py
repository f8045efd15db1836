"""Plot how doctune-tiny's score after fine-tuning grows with the demo's fine-tuning budget.

    python scripts/plot_budget.py [--runs docs/logs/budget.jsonl] [--output docs/budget.png]

Each line of ``--runs`` is one run of the demo's reading fine-tuning and held-out evaluation at
one budget: ``train_docs`` invoices, ``max_steps`` steps (2 pages a step, each page seen once),
``anls_after`` on the held-out questions. Optional: ``train_seconds`` (on one thread),
``train_seed`` and ``eval_seed`` (a line per pairing of draws) and ``anls_before`` (drawn as a
level line).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

from doctune.files import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.85  # the demo's target after fine-tuning


def read_runs(path: Path) -> list[dict]:
    """The runs, fewest invoices first; a line that is not a run with the needed fields is an error."""
    runs = []
    for number, run in read_jsonl(path, SystemExit):
        missing = {"train_docs", "max_steps", "anls_after"} - run.keys()
        if missing:
            raise SystemExit(f"{path} line {number}: missing {', '.join(sorted(missing))}")
        runs.append(run)
    return sorted(runs, key=lambda run: int(run["train_docs"]))


def pairings(runs: list[dict]) -> dict[tuple, list[dict]]:
    """The runs by (training draw, held-out draw), each pairing's runs fewest invoices first."""
    grouped: dict[tuple, list[dict]] = {}
    for run in runs:
        grouped.setdefault((run.get("train_seed"), run.get("eval_seed")), []).append(run)
    return grouped


def plot(runs: list[dict], output: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    groups = pairings(runs)
    for (train_seed, eval_seed), group in groups.items():
        docs = [int(run["train_docs"]) for run in group]
        name = f"train {train_seed} / eval {eval_seed}" if train_seed is not None else "ANLS"
        line, = ax.plot(docs, [run["anls_after"] for run in group], "o-", lw=1, ms=4, label=f"{name}: after")
        befores = [run["anls_before"] for run in group if "anls_before" in run]
        if befores:
            ax.axhline(befores[0], color=line.get_color(), lw=0.8, ls="--")
    by_docs: dict[int, list[float]] = {}
    for run in runs:
        by_docs.setdefault(int(run["train_docs"]), []).append(run["anls_after"])
    full = sorted(d for d, scores in by_docs.items() if len(scores) == len(groups) > 1)
    if full:
        means = [sum(by_docs[d]) / len(by_docs[d]) for d in full]
        ax.plot(full, means, "D-", color="black", lw=2, label=f"mean of the {len(groups)} pairings")
        for x, mean in zip(full, means):
            ax.annotate(f"{mean:.3f}", (x, mean), textcoords="offset points", xytext=(8, -12), fontsize=8)
    ax.axhline(TARGET, color="tab:red", lw=1, ls=":", label=f"target after fine-tuning ({TARGET})")
    ax.plot([], [], "k--", lw=0.8, label="before fine-tuning (dashed)")
    ticks = sorted(by_docs)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{d}\n{d // 2} steps{tick_minutes(runs, d)}" for d in ticks])
    ax.set_xlabel("training invoices, each seen once, 2 a step")
    ax.set_ylabel("held-out ANLS")
    ax.set_ylim(0.3, 0.95)
    ax.set_title("doctune-tiny after fine-tuning, by the demo's fine-tuning budget", fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)


def tick_minutes(runs: list[dict], docs: int) -> str:
    """The fine-tuning minutes (one thread) of the runs at ``docs`` invoices, as a tick's last line."""
    seconds = sorted(run["train_seconds"] for run in runs if int(run["train_docs"]) == docs and run.get("train_seconds"))
    if not seconds:
        return ""
    low, high = round(seconds[0] / 60), round(seconds[-1] / 60)
    return f"\n{low} min" if low == high else f"\n{low}-{high} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "docs" / "logs" / "budget.jsonl")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "budget.png")
    args = parser.parse_args()
    plot(read_runs(args.runs), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
