"""The training recipe: one loop for full fine-tuning, LoRA, DoRA and QLoRA.

``train(config)`` reads top to bottom as setup -> loop -> save. The methods differ only in what
:func:`doctune.models.load_model` returns; multi-GPU, DeepSpeed and FSDP come from 🤗 accelerate
(launch with ``accelerate launch -m doctune.cli train ...``).
"""

import json
import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import TorchDynamoPlugin, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from doctune.checkpoint import (
    BEST,
    CONFIG_FILE,
    TrainerState,
    check_resumable,
    last_checkpoint,
    load_trained_weights,
    load_training_state,
    prune_checkpoints,
    read_run_config,
    save_checkpoint,
    save_weights,
    set_rng_state,
)
from doctune.config import Config
from doctune.data import DocVQADataset, Example, PageConversations, load_docvqa
from doctune.errors import DoctuneError
from doctune.evaluate import evaluate, write_results
from doctune.files import write_text_atomic
from doctune.inference import Predictor
from doctune.models import count_parameters, load_model, load_processor, pick_dtype
from doctune.prompt import IGNORE_INDEX, collate_for_training, render_conversation

log = logging.getLogger(__name__)
METRICS_LOG = "metrics.jsonl"
MIXED_PRECISION = {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}


class RunFolderError(DoctuneError, ValueError):
    """The output folder cannot be used the way the user asked."""


LENGTH_WINDOW = 50  # batches whose samples are sorted by length together, with group_by_length


def collate(processor, samples: list[list[Example]]) -> dict[str, torch.Tensor]:
    """A training batch, right-padded, without the padding mask.

    Under the causal mask a token attends only to tokens before it, which right padding leaves
    real: the padding mask changes nothing that the loss sees (pads carry no labels). Without it
    the attention kernels take their causal path, which skips the masked half of the scores.
    """
    # Train on the first gold answer: deterministic, so a resumed run sees the same targets.
    batch = collate_for_training(processor, [sample[0].image for sample in samples],
                                 [[(e.question, e.answers[0]) for e in sample] for sample in samples])
    del batch["attention_mask"]
    return batch


def sample_lengths(processor, samples: PageConversations) -> list[int]:
    """Tokens of each training sample's text, as it is trained on (its page's image tokens,
    the same for every page at one resolution, count once)."""
    texts = [render_conversation(processor, [(question, answers[0]) for question, answers in samples.texts(i)])
             for i in range(len(samples))]
    return [len(ids) for ids in processor.tokenizer(texts)["input_ids"]]


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int,
                  lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Shuffled index batches of one epoch; the same for the same (seed, epoch), so resume can
    skip exactly the batches already seen.

    With ``lengths``, each window of ``LENGTH_WINDOW`` batches of the shuffled order is sorted by
    length before it is cut into batches, so a batch's samples are about as long as each other
    (little padding), and the batches are then shuffled.
    """
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(num_examples, generator=generator).tolist()
    if lengths is not None:
        window = batch_size * LENGTH_WINDOW
        order = [index for start in range(0, num_examples, window)
                 for index in sorted(order[start:start + window], key=lengths.__getitem__, reverse=True)]
    batches = [order[i:i + batch_size] for i in range(0, num_examples, batch_size)]
    if lengths is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


class _BatchStream:
    """Micro-batches across epochs, keeping ``state.epoch`` / ``state.batches_in_epoch`` current."""

    def __init__(self, accelerator: Accelerator, dataset: PageConversations, processor, config: Config,
                 state: TrainerState):
        self.accelerator, self.dataset, self.processor = accelerator, dataset, processor
        self.config, self.state = config, state
        self._lengths = sample_lengths(processor, dataset) if config.train.group_by_length else None
        self._iterator = None

    def _open_epoch(self):
        train = self.config.train
        batches = epoch_batches(len(self.dataset), train.batch_size, train.seed, self.state.epoch, self._lengths)
        loader = DataLoader(
            self.dataset, batch_sampler=batches,
            collate_fn=partial(collate, self.processor), num_workers=train.num_workers,
            # A private generator: creating the iterator must not draw from the global RNG,
            # or a resumed run would see different dropout masks than an uninterrupted one.
            generator=torch.Generator(),
        )
        loader = self.accelerator.prepare_data_loader(loader)
        return iter(self.accelerator.skip_first_batches(loader, self.state.batches_in_epoch))

    def next(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._iterator = self._open_epoch()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.state.epoch, self.state.batches_in_epoch = self.state.epoch + 1, 0
            self._iterator = self._open_epoch()
            batch = next(self._iterator)
        self.state.batches_in_epoch += 1
        return batch


def _check_run_dir(config: Config, resume: bool) -> Path:
    """The run folder, once it is clear that this run may use it; nothing is written yet."""
    run_dir = config.train.output
    if (run_dir / CONFIG_FILE).is_file() and not resume:
        raise RunFolderError(f"{run_dir} already holds a training run: pass --resume to continue it, "
                             "or choose another --output")
    if resume and last_checkpoint(run_dir) is None:
        raise RunFolderError(f"--resume: {run_dir} has no checkpoint to resume from")
    return run_dir


def _claim_run_dir(config: Config, run_dir: Path) -> None:
    """Create the run folder and save the run's settings there, unless they are there already.

    Called once the data, the precision and the model have loaded: a run that fails before that
    (a mistyped path, fp16 on a CPU) leaves no folder behind that the corrected command would
    refuse as another run's.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CONFIG_FILE).is_file():
        write_text_atomic(run_dir / CONFIG_FILE, config.to_yaml())


def _setup_accelerator(config: Config, run_dir: Path) -> Accelerator:
    device = PartialState().device  # the device this process gets, before precision is fixed
    mixed = MIXED_PRECISION[pick_dtype(config.model.precision, device)]
    # accelerate keeps one process-wide state and refuses a second run in the same process with
    # another precision; each run sets its own (transformers' Trainer resets it the same way for
    # sweeps). The process state (devices, process group) is kept.
    AcceleratorState._reset_state()
    # Dynamic shapes from the start: every batch has its own length, and a graph per length would
    # recompile for most steps.
    dynamo = TorchDynamoPlugin(backend="inductor", dynamic=True) if config.train.compile else None
    return Accelerator(mixed_precision=mixed, log_with="tensorboard", project_dir=run_dir,
                       step_scheduler_with_optimizer=False, dynamo_plugin=dynamo)


def _setup_data(config: Config) -> tuple[PageConversations, DocVQADataset | None]:
    data = config.data
    if data.train is None:
        raise ValueError("no training data: set data.train (or --data) to a hub id, folder, parquet or JSONL file")
    train = load_docvqa(data.train, data.train_split, data.language, data.skip_invalid, data.max_train_samples)
    _report_skipped("train", train)
    samples = PageConversations(train, data.questions_per_sample, config.train.seed)
    if data.questions_per_sample > 1:
        log.info("training on %d samples of up to %d questions about one page (%d questions)", len(samples),
                 data.questions_per_sample, len(train))
    if config.train.eval_every is None:
        return samples, None
    evaluation = load_docvqa(data.eval or data.train, data.eval_split, data.language, data.skip_invalid,
                             data.max_eval_samples)
    _report_skipped("eval", evaluation)
    return samples, evaluation


def _report_skipped(name: str, dataset: DocVQADataset) -> None:
    report = dataset.report
    log.info("%s data: %d records, %d kept, %d skipped", name, report.total, report.kept, report.skipped)
    for problem in report.problems:
        log.warning("%s data: skipped %s", name, problem)


def _setup_optimizer(model, config: Config):
    train = config.train
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train.learning_rate, weight_decay=train.weight_decay)
    scheduler = get_scheduler(train.scheduler, optimizer, num_warmup_steps=train.warmup_steps,
                              num_training_steps=train.max_steps)
    return optimizer, scheduler


def _restore(run_dir: Path, config: Config, model, optimizer, scheduler) -> TrainerState:
    checkpoint = last_checkpoint(run_dir)
    check_resumable(read_run_config(checkpoint), config, checkpoint)
    load_trained_weights(model, checkpoint, config.model.method)
    blobs, state = load_training_state(checkpoint)
    optimizer.load_state_dict(blobs["optimizer"])
    scheduler.load_state_dict(blobs["scheduler"])
    set_rng_state(blobs["rng"])
    log.info("resumed from %s at step %d", checkpoint, state.step)
    return state


def _optimizer_step(accelerator: Accelerator, model, stream: _BatchStream, config: Config) -> tuple[float, int]:
    """Accumulate ``grad_accum`` micro-batches into one step; returns (mean token loss, tokens).

    The loss is summed over answer tokens and divided by the answer tokens of the whole step,
    so accumulating k batches gives the same gradient as one batch k times larger.
    """
    batches = [stream.next() for _ in range(config.train.grad_accum)]
    local_tokens = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches)
    tokens = int(accelerator.reduce(torch.tensor(local_tokens, device=accelerator.device), "sum"))
    total = 0.0
    for i, batch in enumerate(batches):
        syncing = i == len(batches) - 1
        with nullcontext() if syncing else accelerator.no_sync(model):
            # DDP averages gradients over processes: scale back up to a sum over all tokens.
            loss = model(**batch, num_items_in_batch=tokens).loss * accelerator.num_processes
            accelerator.backward(loss)
        total += loss.item() / accelerator.num_processes
    return total, tokens


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


class _LogWindow:
    """Token-weighted mean loss and speed over the steps since the last log line."""

    def __init__(self):
        self.loss_sum, self.tokens, self.steps, self.seconds = 0.0, 0, 0, 0.0
        self.restart_clock()

    def restart_clock(self) -> None:
        self._start = time.perf_counter()

    def add(self, mean_loss: float, tokens: int) -> None:
        self.loss_sum += mean_loss * tokens
        self.tokens += tokens
        self.steps += 1
        self.seconds += time.perf_counter() - self._start
        self.restart_clock()

    def flush(self, **extra) -> dict:
        metrics = {"loss": self.loss_sum / max(self.tokens, 1), "steps_per_s": self.steps / max(self.seconds, 1e-9)}
        metrics.update({k: v for k, v in extra.items() if v is not None})
        self.loss_sum, self.tokens, self.steps, self.seconds = 0.0, 0, 0, 0.0
        return metrics


def _log(accelerator: Accelerator, run_dir: Path, step: int, metrics: dict) -> None:
    accelerator.log(metrics, step=step)
    if accelerator.is_main_process:
        with open(run_dir / METRICS_LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")


def _evaluate_and_keep_best(accelerator, model, processor, eval_data, config: Config, state: TrainerState, run_dir: Path) -> dict:
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)  # generation runs eagerly
    unwrapped.eval()
    predictor = Predictor(unwrapped, processor, config.eval.max_new_tokens, config.eval.num_beams)
    metrics, rows = evaluate(predictor, eval_data, config.eval.batch_size, progress=accelerator.is_main_process)
    unwrapped.train()
    if state.best_anls is None or metrics["anls"] > state.best_anls:
        state.best_anls, state.best_step = metrics["anls"], state.step
        _save_best(unwrapped, processor, config, run_dir, metrics, rows, state.step)
    return metrics


def _save_best(model, processor, config: Config, run_dir: Path, metrics: dict, rows: list[dict], step: int) -> None:
    tmp, best = run_dir / f".{BEST}.tmp", run_dir / BEST
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(model, processor, config, tmp)
    write_results(tmp, {**metrics, "step": step}, rows)
    shutil.rmtree(best, ignore_errors=True)
    tmp.rename(best)


def train(config: Config, resume: bool = False) -> Path:
    """Fine-tune ``config.model`` on ``config.data``; returns the run folder.

    Raises:
        RunFolderError: the output folder holds another run (without ``resume``) or nothing to resume.
        ConfigError: ``resume`` with settings the saved state cannot continue under.
        DataError: a bad record, unless ``data.skip_invalid``.
    """
    run_dir = _check_run_dir(config, resume)
    accelerator = _setup_accelerator(config, run_dir)
    set_seed(config.train.seed)
    train_data, eval_data = _setup_data(config)
    processor = load_processor(config.model.name, config.model.do_image_splitting, config.model.longest_edge)
    model = load_model(config.model, accelerator.device)
    _claim_run_dir(config, run_dir)
    trainable, total = count_parameters(model)
    log.info("%s: %s trainable of %s parameters", config.model.method, f"{trainable:,}", f"{total:,}")
    optimizer, scheduler = _setup_optimizer(model, config)
    state = _restore(run_dir, config, model, optimizer, scheduler) if resume else TrainerState()
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.init_trackers("tensorboard")
    model.train()
    stream = _BatchStream(accelerator, train_data, processor, config, state)
    bar = tqdm(total=config.train.max_steps, initial=state.step, desc="training", unit="step",
               disable=not accelerator.is_main_process)
    window = _LogWindow()
    while state.step < config.train.max_steps:
        loss, tokens = _optimizer_step(accelerator, model, stream, config)
        grad_norm = None
        if config.train.max_grad_norm is not None:
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), config.train.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        bar.update(1)
        window.add(loss, tokens)
        if _due(state.step, config.train.log_every, config.train.max_steps):
            metrics = window.flush(lr=scheduler.get_last_lr()[0], grad_norm=grad_norm, epoch=state.epoch)
            _log(accelerator, run_dir, state.step, metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if eval_data is not None and _due(state.step, config.train.eval_every, config.train.max_steps):
            if accelerator.is_main_process:
                scores = _evaluate_and_keep_best(accelerator, model, processor, eval_data, config, state, run_dir)
                _log(accelerator, run_dir, state.step, {f"eval/{k}": v for k, v in scores.items()})
            accelerator.wait_for_everyone()
            window.restart_clock()  # evaluation time is not training speed
        if _due(state.step, config.train.save_every, config.train.max_steps):
            if accelerator.is_main_process:
                plain = accelerator.unwrap_model(model, keep_torch_compile=False)
                save_checkpoint(plain, processor, optimizer, scheduler, config, state, run_dir)
                prune_checkpoints(run_dir, config.train.keep_last)
            accelerator.wait_for_everyone()
            window.restart_clock()
    bar.close()
    accelerator.end_training()
    return run_dir
