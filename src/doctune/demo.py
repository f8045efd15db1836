"""``doctune demo``: fine-tune doctune-tiny on a kind of document it has never seen.

The demo runs the same code users run on Idefics2-8B:

1. generate target-domain train, validation and eval sets (three draws of documents);
2. evaluate doctune-tiny zero-shot on the eval set (ANLS before);
3. fine-tune it with :func:`doctune.train.train` for a fixed schedule, scoring the validation
   set along the way (the curve), and the same on copies of the sets with every page blanked
   (the blind control: what can be guessed without reading). On a CPU the two fine-tunings run
   side by side, each on half the threads: a model this small uses a second thread poorly, so
   the pair finishes sooner than one run after the other (the whole demo 440 s against 605 s on 2
   cores, with the earlier 432-step schedule);
4. evaluate the checkpoint at the end of each schedule on the eval set (ANLS after, and blind).
   Not the run's ``best/``: the standard error of ANLS on 48 validation questions (about 0.06)
   is larger than the gaps between the demo's checkpoints, so that choice is mostly noise;
5. write ``report.json``, ``curves.png`` and ``report.html``.
"""

import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Literal

import matplotlib
import torch
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from doctune.checkpoint import last_checkpoint
from doctune.config import (
    Config,
    DataSettings,
    EvalSettings,
    ModelSettings,
    TrainSettings,
)
from doctune.evaluate import evaluate_model
from doctune.files import write_jsonl_atomic, write_text_atomic
from doctune.models import default_device, pick_dtype, resolve_precision
from doctune.synth import write_dataset
from doctune.train import METRICS_LOG, train

log = logging.getLogger(__name__)


class DemoSettings(BaseModel):
    """What the demo generates and how it fine-tunes.

    On 2 cores of a Xeon with AMX (``precision: auto`` is bf16 there), the defaults took 501 s with
    the two fine-tunings side by side. Where bf16 is emulated, ``auto`` is fp32 and
    ``max_steps=288, train_docs=576`` halves the fine-tuning.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field("doctune-tiny", description="Model to fine-tune.")
    kind: str = Field("invoice", description="Target document kind; doctune-tiny was not pre-trained on it.")
    train_docs: int = Field(
        1152, gt=0, description="Target-domain pages to fine-tune on; with the default schedule each is seen once.")
    eval_docs: int = Field(45, gt=0, description="Held-out target-domain pages (about 5 questions each).")
    val_docs: int = Field(10, gt=0, description="Validation pages for the ANLS curve.")
    train_seed: int = 1001
    eval_seed: int = 2002
    val_seed: int = 3003
    method: Literal["full", "lora", "dora"] = Field("full", description="Fine-tuning method.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="Compute precision of every step; 'auto' is bf16 on CPUs where bf16 matrix products are "
                    "faster than fp32 ones (timed once), else fp32; fp16 is for GPUs without bf16.",
    )
    freeze_vision: bool = Field(
        True, description="Full fine-tuning: keep the pre-trained vision encoder as it is. It already reads "
                          "the glyphs of every kind, and a step skips its backward pass."
    )
    freeze_connector: bool = Field(
        True, description="Full fine-tuning: keep the pre-trained connector as it is, so that the language "
                          "model learns the new kind from the image tokens it was pre-trained to read."
    )
    freeze_text_layers: int = Field(
        0, ge=0, description="Full fine-tuning: keep the language model's input embeddings and first N decoder "
                             "layers as they are; a step's backward pass stops above them.")
    questions_per_sample: int = Field(
        8, gt=0, description="Questions about one page trained on together, as one multi-turn chat (an invoice "
                             "has 3-8): its image tokens are encoded once for all of them.")
    max_steps: int = Field(576, gt=0)
    batch_size: int = Field(2, gt=0, description="Pages (conversations) per step.")
    group_by_length: bool = Field(False, description="Pair pages of similar length in a step (less padding).")
    learning_rate: float = Field(
        4.5e-4, gt=0, description="Peak learning rate, reached after the warmup and then decayed linearly "
                                  "(chosen on the four-pairing gate, docs/pretrain.md).")
    warmup_steps: int = Field(64, ge=0)
    eval_every: int = Field(144, gt=0, description="Steps between the curve's ANLS points.")
    curve_eval_samples: int = Field(48, gt=0, description="Validation questions per curve point.")
    eval_batch_size: int = Field(32, gt=0)
    max_new_tokens: int = Field(
        32, gt=0, description="Answer tokens: characters for doctune-tiny, whose tokenizer is character-level. The "
                              "longest answers in the demo's draws have 31 characters.")
    num_beams: int = Field(
        1, ge=1, description="Beams for every answer the demo scores, before and after alike (1: greedy). Four "
                             "raise both scores, before more than after, for about 1.2 times the demo's time.")
    examples_shown: int = Field(12, ge=0, description="Eval pages shown in report.html.")
    side_by_side: bool = Field(
        True, description="On a CPU with two or more threads, fine-tune the blind control in a second process "
                          "while the reading run trains, each on half the threads. Off: one after the other.")


def _train_config(settings: DemoSettings, train_data: Path, val_data: Path, output: Path) -> Config:
    full = settings.method == "full"  # adapter methods choose their weights themselves
    return Config(
        model=ModelSettings(name=settings.model, method=settings.method, precision=settings.precision,
                            freeze_vision=settings.freeze_vision and full,
                            freeze_connector=settings.freeze_connector and full,
                            freeze_text_layers=settings.freeze_text_layers if full else 0),
        data=DataSettings(train=str(train_data), eval=str(val_data), max_eval_samples=settings.curve_eval_samples,
                          questions_per_sample=settings.questions_per_sample),
        train=TrainSettings(
            output=output, max_steps=settings.max_steps, batch_size=settings.batch_size, grad_accum=1,
            learning_rate=settings.learning_rate, warmup_steps=settings.warmup_steps, weight_decay=0.0,
            log_every=5, save_every=settings.max_steps, eval_every=settings.eval_every, keep_last=1,
            group_by_length=settings.group_by_length,
        ),
        eval=EvalSettings(batch_size=settings.eval_batch_size, max_new_tokens=settings.max_new_tokens,
                          num_beams=settings.num_beams),
    )


def blank_copy(data_file: Path, output: Path) -> Path:
    """A copy of a JSONL dataset whose every page is a white page of the same size.

    Each page gets its own blank file, at the same relative path, so the questions about one
    page still group into the same conversations as in the reading run.
    """
    rows, blanks, by_size = [], set(), {}
    for line in data_file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["image"] not in blanks:
            with Image.open(data_file.parent / row["image"]) as page:
                size = page.size
            target = output / row["image"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if size in by_size:  # a blank of this size is already encoded: copy its bytes
                shutil.copyfile(by_size[size], target)
            else:
                Image.new("RGB", size, "white").save(target)
                by_size[size] = target
            blanks.add(row["image"])
        rows.append({**row, "words": [], "bounding_boxes": []})
    write_jsonl_atomic(output / "data.jsonl", rows)
    return output / "data.jsonl"


def _evaluate(model: str, data: Path, output: Path, settings: DemoSettings) -> tuple[dict, list[dict]]:
    return evaluate_model(model, str(data), output, batch_size=settings.eval_batch_size,
                          max_new_tokens=settings.max_new_tokens, precision=settings.precision,
                          num_beams=settings.num_beams)


def _fine_tune(settings: DemoSettings, train_data: Path, val_data: Path, run_dir: Path) -> tuple[float, Path]:
    """Train; returns the seconds it took and the checkpoint at the end of the schedule."""
    start = time.perf_counter()
    train(_train_config(settings, train_data, val_data, run_dir))
    return time.perf_counter() - start, last_checkpoint(run_dir)


def _blind_threads(settings: DemoSettings) -> int:
    """Threads for a blind run beside the reading run: half of this process's; 0 runs them in turn
    (switched off, on a GPU, or with a single thread)."""
    if not settings.side_by_side or default_device().type != "cpu":
        return 0
    return torch.get_num_threads() // 2


def _blind_worker(results, threads: int, settings: DemoSettings, data: tuple[Path, Path, Path]) -> None:
    """The blind run in its own process; sends back ``_fine_tune``'s result. An error ends the
    process with its traceback printed and nothing sent."""
    torch.set_num_threads(threads)
    os.environ["TQDM_POSITION"] = "1"  # its progress bars go on the line below the reading run's
    results.send(_fine_tune(settings, *data))


def _fine_tune_both(settings: DemoSettings, blind_threads: int, reading: tuple[Path, Path, Path],
                    blind: tuple[Path, Path, Path]) -> tuple[tuple[float, Path], tuple[float, Path]]:
    """Fine-tune on ``reading`` and ``blind`` (train data, validation data, run folder each): in
    turn, or with ``blind_threads`` (see :func:`_blind_threads`) the blind run in a second process."""
    if not blind_threads:
        return _fine_tune(settings, *reading), _fine_tune(settings, *blind)
    threads = torch.get_num_threads()
    # spawn, not fork: a forked child would inherit this process's OpenMP and accelerate state.
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(target=_blind_worker, args=(sender, blind_threads, settings, blind), name="blind control")
    worker.start()
    sender.close()  # the worker holds the only sending end: its exit shows as EOF here
    torch.set_num_threads(threads - blind_threads)
    try:
        reading_result = _fine_tune(settings, *reading)
    except BaseException:  # the reading run failed or was interrupted: stop the blind one too
        worker.terminate()
        worker.join()
        raise
    finally:
        torch.set_num_threads(threads)
    try:
        blind_result = receiver.recv()
    except EOFError:
        worker.join()
        raise RuntimeError(
            f"the blind control's fine-tuning failed (exit code {worker.exitcode}): its error is printed above; "
            "a negative code is the signal that killed it, often for memory, where side_by_side=false "
            "trains the two runs in turn") from None
    worker.join()
    return reading_result, blind_result


def run_demo(output: Path, settings: DemoSettings | None = None) -> dict:
    """Run the whole demo into ``output``; returns the report (also saved as ``report.json``)."""
    settings = settings or DemoSettings()
    started = time.perf_counter()
    # Chosen once, here: the blind control's process would time bf16 against fp32 again, and on a
    # CPU where the two are close it could choose otherwise than the reading run.
    settings = settings.model_copy(update={"precision": resolve_precision(settings.precision, default_device())})
    output.mkdir(parents=True, exist_ok=True)
    log.info("1/5 generating %d %s pages to train on, %d to validate on and %d to evaluate on", settings.train_docs,
             settings.kind, settings.val_docs, settings.eval_docs)
    train_data = write_dataset(output / "data" / "train", [settings.kind], settings.train_docs, settings.train_seed)
    val_data = write_dataset(output / "data" / "val", [settings.kind], settings.val_docs, settings.val_seed)
    eval_data = write_dataset(output / "data" / "eval", [settings.kind], settings.eval_docs, settings.eval_seed)
    log.info("2/5 evaluating %s before fine-tuning", settings.model)
    before, before_rows = _evaluate(settings.model, eval_data, output / "eval-before", settings)
    blind_train = blank_copy(train_data, output / "data" / "train-blind")
    blind_val = blank_copy(val_data, output / "data" / "val-blind")
    blind_eval = blank_copy(eval_data, output / "data" / "eval-blind")
    blind_threads = _blind_threads(settings)
    log.info("3/5 fine-tuning (%s, %d steps) on the pages, and on blanked copies as the blind control%s",
             settings.method, settings.max_steps, " side by side (lower bars)" if blind_threads else "")
    (train_seconds, final), (blind_seconds, blind_final) = _fine_tune_both(
        settings, blind_threads, (train_data, val_data, output / "run"), (blind_train, blind_val, output / "run-blind"))
    log.info("4/5 evaluating after fine-tuning (%s)", final.name)
    after, after_rows = _evaluate(str(final), eval_data, output / "eval-after", settings)
    log.info("5/5 evaluating the blind control on blanked eval pages")
    blind, _ = _evaluate(str(blind_final), blind_eval, output / "eval-blind", settings)
    device = default_device()
    report = {
        "anls_before": before["anls"], "anls_after": after["anls"], "anls_blind": blind["anls"],
        "exact_match_before": before["exact_match"], "exact_match_after": after["exact_match"],
        "train_seconds": round(train_seconds, 1), "blind_train_seconds": round(blind_seconds, 1),
        "side_by_side": blind_threads > 0, "num_eval": after["num_samples"],
        "evaluated_after": str(final.relative_to(output)),
        "device": device.type,
        "compute_dtype": str(pick_dtype(settings.precision, device)).removeprefix("torch."),
        "total_seconds": round(time.perf_counter() - started, 1), "settings": settings.model_dump(),
    }
    write_text_atomic(output / "report.json", json.dumps(report, indent=2) + "\n")
    plot_curves(output, report)
    write_html(output, report, eval_data, before_rows, after_rows, settings.examples_shown)
    return report


def _read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_LOG).read_text().splitlines()]


def plot_curves(output: Path, report: dict) -> Path:
    """``curves.png``: training loss and validation ANLS per step, reading vs blind, with the
    held-out ANLS before and after fine-tuning marked."""
    matplotlib.use("Agg")  # no display needed; called here, not at import, to leave callers' backends alone
    import matplotlib.pyplot as plt

    figure, (loss_ax, anls_ax) = plt.subplots(1, 2, figsize=(11, 4))
    last_step = report["settings"]["max_steps"]
    runs = (("run", "reading the page", report["anls_after"]), ("run-blind", "blind (pages blanked)", report["anls_blind"]))
    for name, label, held_out in runs:
        rows = _read_metrics(output / name)
        losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        scores = [(r["step"], r["eval/anls"]) for r in rows if "eval/anls" in r]
        loss_ax.plot(*zip(*losses), label=label)
        line, = anls_ax.plot(*zip(*scores), marker="o", label=f"{label}: validation")
        anls_ax.scatter([last_step], [held_out], marker="*", s=160, color=line.get_color(), zorder=3,
                        label=f"{label}: held-out {held_out:.3f}")
    anls_ax.scatter([0], [report["anls_before"]], marker="*", s=160, color="gray", zorder=3,
                    label=f"before fine-tuning: held-out {report['anls_before']:.3f}")
    loss_ax.set(xlabel="step", ylabel="training loss (answer tokens)", yscale="log", title="Loss")
    anls_ax.set(xlabel="step", ylabel="ANLS", ylim=(0, 1), title="ANLS (validation curve, held-out stars)")
    for axis in (loss_ax, anls_ax):
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    path = output / "curves.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_html(output: Path, report: dict, eval_data: Path, before: list[dict], after: list[dict], shown: int) -> Path:
    """``report.html``: the scores, the curves and a dozen eval pages with their answers."""
    pages = {}
    for line in eval_data.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        pages.setdefault(row["id"], (eval_data.parent / row["image"]).relative_to(output).as_posix())
    examples = []
    for b, a in zip(before, after):
        if len(examples) < shown and not any(e["image"] == pages[a["id"]] for e in examples):
            examples.append({"image": pages[a["id"]], "question": a["question"], "gold": a["answers"][0],
                             "before": b["prediction"], "after": a["prediction"], "anls": a["anls"]})
    env = Environment(loader=PackageLoader("doctune"), autoescape=select_autoescape())
    path = output / "report.html"
    write_text_atomic(path, env.get_template("demo.html").render(report=report, examples=examples))
    return path
