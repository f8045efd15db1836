"""Typed, validated settings for every doctune job.

One pydantic model per concern; a YAML file (a shipped preset or the user's own) fills them, and
``key=value`` overrides from the command line are applied on top. Unknown keys are errors that
name the key and the file, so a typo never silently falls back to a default.
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from doctune.errors import DoctuneError

PRESETS_DIR = Path(__file__).parent / "presets"
# The seed recipe's adapter targets: attention and MLP projections of the language model, the
# modality projection and the perceiver resampler. The vision encoder is left out on purpose.
DEFAULT_TARGET_MODULES = (
    r".*(text_model|modality_projection|perceiver_resampler).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$"
)


class ConfigError(DoctuneError, ValueError):
    """A settings file or override is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(_Strict):
    """Adapter settings for the ``lora``, ``dora`` and ``qlora`` methods."""

    r: int = Field(8, gt=0, description="Rank of the low-rank update.")
    alpha: float = Field(8, gt=0, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the adapter input.")
    init: Literal["gaussian", "default", "pissa", "olora"] = Field(
        "gaussian", description="Adapter weight initialisation (peft's init_lora_weights)."
    )
    target_modules: str = Field(DEFAULT_TARGET_MODULES, description="Regex of module names that get adapters.")
    use_dora: bool = Field(
        False, description="Weight-decomposed adapters; implied by method 'dora', gives QDoRA with 'qlora'."
    )


class ModelSettings(_Strict):
    """Which model to load and how to adapt it."""

    name: str = Field(
        "doctune-tiny",
        description="Hub id, local model folder, a doctune run or checkpoint folder, or 'doctune-tiny'.",
    )
    method: Literal["full", "lora", "dora", "qlora"] = Field("lora", description="Fine-tuning method.")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    do_image_splitting: bool = Field(False, description="Split each page into 4 crops + the whole page.")
    longest_edge: int | None = Field(
        None, gt=0, description="Resize pages so their longest edge is at most this many pixels."
    )
    freeze_vision: bool = Field(
        False, description="Full fine-tuning only: keep the vision encoder frozen (adapters always do)."
    )
    freeze_connector: bool = Field(
        False, description="Full fine-tuning only: keep the connector (modality projection and perceiver "
                           "resampler) frozen, so that the language model adapts to the image tokens it was "
                           "pre-trained on."
    )
    freeze_text_layers: int = Field(
        0, ge=0, description="Full fine-tuning only: keep the language model's input embeddings and its first N "
                             "decoder layers frozen. The backward pass then stops above them, and they need no "
                             "optimizer state."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="'auto' picks bf16 where the GPU supports it, else fp16 on GPU; on CPU, bf16 "
                            "where a bf16 matrix product is faster than an fp32 one (timed once, on CPUs with AMX or "
                            "AVX-512 bf16), else fp32."
    )


class DataSettings(_Strict):
    """Where the question/answer data comes from."""

    train: str | None = Field(None, description="Hub id, save_to_disk folder, parquet file/folder or JSONL.")
    eval: str | None = Field(None, description="Evaluation data; defaults to the training source.")
    train_split: str = Field("train", description="Split of `train` to train on.")
    eval_split: str = Field("test", description="Split of `eval` to evaluate on.")
    language: str = Field("en", description="Language key of the `query` field.")
    skip_invalid: bool = Field(False, description="Skip and count bad records instead of stopping.")
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training records.")
    max_eval_samples: int | None = Field(None, gt=0, description="Evaluate on the first N records only.")
    questions_per_sample: int = Field(
        1, gt=0, description="Train on up to N questions about the same page as one multi-turn chat: the page's "
                             "image tokens are encoded once for N answers. train.batch_size counts these samples.")


class TrainSettings(_Strict):
    """Optimisation, checkpointing and evaluation cadence."""

    output: Path = Field(Path("runs/doctune"), description="Run folder: checkpoints, logs, best model.")
    max_steps: int = Field(100, gt=0, description="Optimizer steps to train for.")
    batch_size: int = Field(2, gt=0, description="Examples per device per micro-batch.")
    grad_accum: int = Field(8, gt=0, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(50, ge=0)
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip gradients to this norm; null disables.")
    log_every: int = Field(10, gt=0, description="Log training metrics every N steps.")
    save_every: int = Field(100, gt=0, description="Write a resumable checkpoint every N steps.")
    eval_every: int | None = Field(None, gt=0, description="Evaluate ANLS every N steps (and at the end).")
    keep_last: int = Field(2, gt=0, description="Resumable checkpoints kept on disk (the best is kept apart).")
    seed: int = 42
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    group_by_length: bool = Field(
        False, description="Batch training samples of similar length together, so batches carry less padding; "
                           "the batches still come in a random order.")
    compile: bool = Field(
        False, description="Compile the model with torch.compile (inductor, dynamic shapes) for faster steps, at a "
                           "one-off cost of a minute or more at the first step; on a CPU it needs a C++ compiler.")


class EvalSettings(_Strict):
    """Generation settings for evaluation and prediction."""

    batch_size: int = Field(8, gt=0)
    max_new_tokens: int = Field(32, gt=0)
    num_beams: int = Field(1, ge=1, description="1 answers greedily; more runs beam search with that many beams.")


class Config(_Strict):
    """Everything a training run needs; saved resolved next to every checkpoint."""

    model: ModelSettings = Field(default_factory=ModelSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)

    @model_validator(mode="after")
    def _check_method_options(self) -> "Config":
        for part in ("vision", "connector", "text_layers"):
            if getattr(self.model, f"freeze_{part}") and self.model.method != "full":
                raise ValueError(f"model.freeze_{part} applies to method 'full' only; choose which weights "
                                 "adapters train with model.lora.target_modules")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def resolve_preset(name_or_path: str) -> Path:
    """Return the YAML file for a shipped preset name or a path.

    Raises:
        ConfigError: neither a file nor a preset of that name exists.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    names = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
    raise ConfigError(f"{name_or_path}: no such file, and no shipped preset of that name (presets: {names})")


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``train.learning_rate=2e-4`` into a key path and a YAML-typed value."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. train.max_steps=200")
    return key.strip().split("."), yaml.safe_load(raw)


def _set_nested(tree: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {key} is a value, not a section")
        tree = node
    tree[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] = (), schema: type[BaseModel] = Config):
    """Build ``schema`` (a training :class:`Config` by default) from an optional YAML file plus
    ``key=value`` overrides.

    Raises:
        ConfigError: the file is unreadable or not a mapping, or a key is unknown or a value
            invalid. The message names the source and the offending key.
    """
    source = "command line"
    tree: dict = {}
    if path is not None:
        file = resolve_preset(str(path))
        source = str(file)
        try:
            tree = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{file}: not valid YAML: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"{file}: expected a mapping of settings, e.g. model:, data:, train:")
    for item in overrides:
        _set_nested(tree, *parse_override(item))
    try:
        return schema.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from err


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid settings"]
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)
