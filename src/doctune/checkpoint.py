"""Self-describing checkpoint folders, and finding the model a user means by a name.

A training run writes::

    <output>/
    ├── config.yaml                  resolved settings of the run
    ├── metrics.jsonl                one JSON object per log or evaluation event
    ├── tensorboard/                 the same metrics for TensorBoard
    ├── checkpoints/
    │   ├── step-00000100/           a resumable checkpoint (see save_checkpoint)
    │   ├── step-00000200/
    │   └── last -> step-00000200    pointer to the newest complete checkpoint
    └── best/                        weights of the best evaluation so far (see save_weights)

Checkpoints are written to a temporary folder and renamed into place, so a run killed mid-save
leaves the previous checkpoint intact and ``last`` always points at a complete one.
"""

import json
import os
import platform
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file

from doctune import __version__
from doctune.config import Config, ConfigError, ModelSettings, load_config
from doctune.models import (
    ADAPTER_METHODS,
    MODEL_CLASS,
    load_processor,
    pick_dtype,
    quantization_config,
    reading_model,
    resolve_model_path,
)

CHECKPOINTS = "checkpoints"
LAST = "last"
BEST = "best"
TRAINING_STATE = "training_state.pt"
TRAINER_STATE = "trainer_state.json"
CONFIG_FILE = "config.yaml"
VERSIONS_FILE = "versions.json"
# Settings that may change when a run resumes; anything else would make the resumed run a
# different experiment than the one whose optimizer state and data position we restore.
RESUMABLE_CHANGES = {"train.max_steps", "train.log_every", "train.save_every", "train.eval_every",
                     "train.keep_last", "train.num_workers", "eval.batch_size", "eval.max_new_tokens",
                     "eval.num_beams", "train.compile", "data.max_eval_samples", "data.eval", "data.eval_split"}


@dataclass
class TrainerState:
    """Where training stands; saved as ``trainer_state.json``."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    best_anls: float | None = None
    best_step: int | None = None


def library_versions() -> dict[str, str]:
    return {"doctune": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version()}


def save_weights(model, processor, config: Config, directory: Path) -> None:
    """Write what inference needs: weights (adapter or full model), processor, config, versions."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / CONFIG_FILE).write_text(config.to_yaml())
    (directory / VERSIONS_FILE).write_text(json.dumps(library_versions(), indent=2))


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(model, processor, optimizer, scheduler, config: Config, state: TrainerState, run_dir: Path) -> Path:
    """Write a resumable checkpoint and point ``checkpoints/last`` at it.

    The folder holds the files of :func:`save_weights` plus ``training_state.pt`` (optimizer,
    scheduler and RNG states) and ``trainer_state.json`` (step, data position, best score).
    """
    root = run_dir / CHECKPOINTS
    final = root / f"step-{state.step:08d}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(model, processor, config, tmp)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
               tmp / TRAINING_STATE)
    (tmp / TRAINER_STATE).write_text(json.dumps(asdict(state), indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    _point_last_at(root, final.name)
    return final


def _point_last_at(root: Path, name: str) -> None:
    link = root / f".{LAST}.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(name)
    os.replace(link, root / LAST)  # atomic: readers see the old or the new target, never none


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step folders."""
    steps = sorted((run_dir / CHECKPOINTS).glob("step-*"))
    for old in steps[:-keep]:
        shutil.rmtree(old)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The step folder ``checkpoints/last`` points at, under ``run_dir`` as given (relative
    stays relative), or ``None`` before the first save."""
    link = run_dir / CHECKPOINTS / LAST
    return link.parent / os.readlink(link) if link.exists() else None


def load_training_state(checkpoint: Path) -> tuple[dict, TrainerState]:
    """The optimizer/scheduler/RNG states and the trainer state saved in ``checkpoint``."""
    blobs = torch.load(checkpoint / TRAINING_STATE, weights_only=False)
    return blobs, TrainerState(**json.loads((checkpoint / TRAINER_STATE).read_text()))


def load_trained_weights(model, checkpoint: Path, method: str) -> None:
    """Copy the trained weights of ``checkpoint`` into a freshly built ``model`` in place."""
    if method in ADAPTER_METHODS:
        result = set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
        if result.unexpected_keys:
            raise ValueError(f"{checkpoint}: adapter weights do not fit the model: {result.unexpected_keys[:5]}")
    else:
        model.load_state_dict(load_file(checkpoint / "model.safetensors"), strict=True)


def check_resumable(saved: Config, current: Config, checkpoint: Path) -> None:
    """Refuse to resume when a setting changed that the saved state depends on.

    Raises:
        ConfigError: naming each changed key with its saved and current value.
    """
    before, after = _flatten(saved.model_dump(mode="json")), _flatten(current.model_dump(mode="json"))
    changed = [k for k in sorted(before) if before[k] != after.get(k) and k not in RESUMABLE_CHANGES]
    if changed:
        detail = "; ".join(f"{k}: {before[k]!r} -> {after.get(k)!r}" for k in changed)
        raise ConfigError(f"cannot resume from {checkpoint}: settings changed ({detail}). "
                          "Start a new run with a different train.output, or restore these settings.")


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def find_model_dir(spec: str) -> tuple[str, Config | None]:
    """Resolve what a user typed as a model to a loadable folder or hub id.

    ``spec`` may be ``doctune-tiny``, a hub id, a model folder, a doctune checkpoint folder, or a
    run folder (its ``best/`` if an evaluation ran, else its last checkpoint).

    Returns:
        (path or hub id, the doctune config saved with it or ``None`` for plain models).

    Raises:
        ConfigError: a run folder that holds no checkpoint yet.
    """
    path = Path(spec)
    if (path / CHECKPOINTS).is_dir() or (path / BEST).is_dir():
        chosen = path / BEST if (path / BEST).is_dir() else last_checkpoint(path)
        if chosen is None:
            raise ConfigError(f"{spec}: this run folder has no checkpoint yet; train it first")
        path = chosen
    if (path / CONFIG_FILE).is_file():
        return str(path), load_config(path / CONFIG_FILE)
    return resolve_model_path(spec), None


def load_for_inference(spec: str, device: torch.device, precision: str = "auto"):
    """Load a model and its processor for generation from anything :func:`find_model_dir` takes.

    Adapters are applied on their base model automatically, and merged into it for LoRA/DoRA
    (merging into 4-bit weights would lose precision, so QLoRA adapters stay separate).

    Returns:
        (model in eval mode on ``device``, processor).

    Raises:
        ModelLoadError: ``spec`` names no model that can be found or read.
    """
    directory, config = find_model_dir(spec)
    dtype = pick_dtype(precision, device)
    with reading_model(spec):
        if config is None or config.model.method == "full":
            model = MODEL_CLASS.from_pretrained(directory, dtype=dtype).to(device)
        else:
            model = _load_adapter_model(directory, config.model, dtype, device)
    # Plain models follow the seed recipe and keep image splitting off; a run's own setting wins.
    splitting = config.model.do_image_splitting if config is not None else False
    return model.eval(), load_processor(directory, do_image_splitting=splitting)


def _load_adapter_model(directory: str, settings: ModelSettings, dtype: torch.dtype, device: torch.device):
    quant = quantization_config(settings, dtype)
    base = MODEL_CLASS.from_pretrained(
        resolve_model_path(settings.name), dtype=dtype, quantization_config=quant,
        device_map={"": device} if quant is not None else None,
    )
    if quant is None:
        base = base.to(device)
    model = PeftModel.from_pretrained(base, directory)
    return model if quant is not None else model.merge_and_unload()


def read_run_config(run_dir: Path) -> Config:
    """The resolved config saved at the top of a run folder."""
    file = run_dir / CONFIG_FILE
    if not file.is_file():
        raise ConfigError(f"{run_dir}: not a doctune run folder (no {CONFIG_FILE})")
    return load_config(file)
