"""Load an Idefics2 checkpoint and prepare it for one of the four fine-tuning methods.

Everything model-specific lives here: the model class, the processor options and which parts an
adapter touches. ``full``, ``lora``, ``dora`` and ``qlora`` differ only in what
:func:`load_model` returns; the training loop never branches on the method.
"""

import contextlib
import functools
import logging
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    AutoProcessor,
    BitsAndBytesConfig,
    Idefics2ForConditionalGeneration,
)

from doctune.config import ConfigError, LoraSettings, ModelSettings
from doctune.errors import DoctuneError

log = logging.getLogger(__name__)


class UnsupportedError(DoctuneError, RuntimeError):
    """The requested method or precision cannot run on this machine."""


class ModelLoadError(DoctuneError, OSError):
    """A model, its processor or an adapter could not be found or read."""


TINY_MODEL = "doctune-tiny"
TINY_MODEL_DIR = Path(__file__).parent / "assets" / TINY_MODEL
MODEL_CLASS = Idefics2ForConditionalGeneration
VISION_PREFIX = "model.vision_model."
CONNECTOR_PREFIX = "model.connector."
ADAPTER_METHODS = ("lora", "dora", "qlora")


def default_device() -> torch.device:
    """The first GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_model_path(name: str) -> str:
    """Map the embedded name ``doctune-tiny`` to its folder; pass hub ids and paths through."""
    return str(TINY_MODEL_DIR) if name == TINY_MODEL else name


@contextlib.contextmanager
def reading_model(name: str):
    """Turn the OSError that transformers and peft raise for a model they cannot find or read (a
    mistyped hub id, a folder without weights) into a :class:`ModelLoadError` naming ``name``."""
    try:
        yield
    except OSError as err:
        raise ModelLoadError(f"cannot load the model {name!r}: {err}\nA model is {TINY_MODEL}, a Hugging Face hub "
                             "id such as HuggingFaceM4/idefics2-8b, a model folder, or a doctune run or "
                             "checkpoint folder.") from err


def load_processor(name: str, do_image_splitting: bool = False, longest_edge: int | None = None):
    """Load the processor of ``name`` (hub id or folder), with the page-resolution options applied."""
    with reading_model(name):
        processor = AutoProcessor.from_pretrained(resolve_model_path(name), do_image_splitting=do_image_splitting)
    if longest_edge is not None:
        size = dict(processor.image_processor.size)
        size["longest_edge"] = longest_edge
        size["shortest_edge"] = min(size.get("shortest_edge") or longest_edge, longest_edge)
        processor.image_processor.size = size
    return processor


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AMX tiles or AVX-512 bf16) rather than emulating bf16."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def _matmul_seconds(dtype: torch.dtype, rounds: int = 5, repeats: int = 4) -> float:
    """The best time of ``repeats`` products of a 512 x 256 and a 256 x 1024 matrix in ``dtype``, over
    ``rounds`` tries: about the sizes of doctune-tiny's (width 256, feed-forward layers 512 and 768 wide)."""
    left, right = torch.randn(512, 256).to(dtype), torch.randn(256, 1024).to(dtype)
    left @ right  # the first call loads the kernel
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            left @ right
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 matrix products beat fp32 ones on this CPU, timed once per process.

    Having the instructions does not settle it. AMX tiles (recent Xeons) run bf16 many times
    faster than fp32 (about 3 TFLOPS against 0.2-0.4 on two Sapphire Rapids cores), and AVX-512
    bf16 on an AMD EPYC made doctune-tiny's demo take 0.83 of its fp32 time; but on a Xeon without
    AMX that reports ``avx512_bf16``, bf16 products ran at about half fp32's speed (103 against 196
    GFLOPS on one thread) and the demo's steps took 1.6 times as long. So where the instructions
    exist, one product is timed in each dtype (0.05-0.09 s on the Xeon above); where they do not, bf16 is
    emulated and far slower, and it is not timed at all.
    """
    if not cpu_has_native_bf16():
        return False
    bf16, fp32 = _matmul_seconds(torch.bfloat16), _matmul_seconds(torch.float32)
    log.info("precision auto: a bf16 matrix product takes %.2f of fp32's time on this CPU, so %s", bf16 / fp32,
             "bf16" if bf16 < fp32 else "fp32")
    return bf16 < fp32


PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``.

    'auto' takes bf16 on GPUs that support it and fp16 on other GPUs. On a CPU it takes bf16
    where bf16 matrix products are faster than fp32 ones (with AMX, twice the speed of fp32 for
    doctune-tiny, training and generation alike; see :func:`cpu_bf16_is_faster`) and fp32 elsewhere.

    Raises:
        UnsupportedError: bf16/fp16 was asked for on a device that cannot run it.
    """
    on_gpu = device.type == "cuda"
    if precision == "auto":
        if not on_gpu:
            return torch.bfloat16 if cpu_bf16_is_faster() else torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16" and on_gpu and not torch.cuda.is_bf16_supported():
        raise UnsupportedError("precision bf16: this GPU has no bf16 support; use precision=fp16 or auto")
    if precision == "fp16" and not on_gpu:
        raise UnsupportedError("precision fp16 needs a GPU; on CPU use precision=fp32 (or bf16)")
    return PRECISIONS[precision]


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` with 'auto' replaced by what :func:`pick_dtype` chooses: 'bf16', 'fp16' or 'fp32'."""
    dtype = pick_dtype(precision, device)
    return next(name for name, value in PRECISIONS.items() if value == dtype)


def check_qlora_supported(device: torch.device) -> None:
    """Fail before any weights load when 4-bit NF4 cannot run here.

    Raises:
        UnsupportedError: bitsandbytes is missing or has no 4-bit backend for this device.
    """
    try:
        import bitsandbytes  # noqa: F401  (imported for its availability only)
    except ImportError as err:
        raise UnsupportedError("method qlora needs bitsandbytes: pip install 'bitsandbytes>=0.50'") from err
    # bitsandbytes >= 0.50 quantizes NF4 on CUDA, Intel XPU and the CPU; not on Apple MPS.
    if device.type not in ("cuda", "cpu", "xpu"):
        raise UnsupportedError(
            f"method qlora: bitsandbytes cannot quantize to 4-bit on device '{device.type}'; "
            "use method=lora or method=dora instead"
        )


def quantization_config(settings: ModelSettings, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """4-bit NF4 with double quantization for ``qlora``; ``None`` for the other methods."""
    if settings.method != "qlora":
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def lora_config(settings: ModelSettings) -> LoraConfig | None:
    """The adapter configuration for adapter methods; ``None`` for full fine-tuning."""
    if settings.method not in ADAPTER_METHODS:
        return None
    lora: LoraSettings = settings.lora
    init = {"gaussian": "gaussian", "default": True, "pissa": "pissa", "olora": "olora"}[lora.init]
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        init_lora_weights=init,
        use_dora=settings.method == "dora" or lora.use_dora,
    )


def load_model(settings: ModelSettings, device: torch.device):
    """Load the base model and make it trainable the way ``settings.method`` says.

    Args:
        settings: model section of the run configuration; ``settings.name`` must be a model
            (hub id, folder or ``doctune-tiny``), not a run folder.
        device: where training runs; decides the dtype and where 4-bit weights are placed.

    Returns:
        The model, a ``peft.PeftModel`` for adapter methods, with ``requires_grad`` set.
    """
    dtype = pick_dtype(settings.precision, device)
    if settings.method == "qlora":
        check_qlora_supported(device)
    # Full fine-tuning keeps fp32 master weights; autocast supplies the low precision compute.
    load_dtype = torch.float32 if settings.method == "full" else dtype
    quant = quantization_config(settings, dtype)
    with reading_model(settings.name):
        model = MODEL_CLASS.from_pretrained(
            resolve_model_path(settings.name),
            dtype=load_dtype,
            quantization_config=quant,
            device_map={"": device} if quant is not None else None,
        )
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.gradient_checkpointing)
    elif settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    adapters = lora_config(settings)
    if adapters is not None:
        # get_peft_model freezes every base weight; fp16/bf16 runs keep adapter weights in fp32
        # (autocast_adapter_dtype), which fp16 training needs to stay stable.
        return get_peft_model(model, adapters, autocast_adapter_dtype=True)
    frozen = tuple(prefix for prefix, freeze in ((VISION_PREFIX, settings.freeze_vision),
                                                 (CONNECTOR_PREFIX, settings.freeze_connector)) if freeze)
    if frozen:
        for name, param in model.named_parameters():
            param.requires_grad = not name.startswith(frozen)
    for module in bottom_of_language_model(model, settings.freeze_text_layers):
        module.requires_grad_(False)
    return model


def bottom_of_language_model(model, layers: int) -> list[torch.nn.Module]:
    """The language model's input embeddings and its first ``layers`` decoder layers (none for 0):
    what ``model.freeze_text_layers`` freezes. Nothing below them trains in the language model,
    so the backward pass stops above them."""
    if not layers:
        return []
    decoder = model.get_decoder()
    count = len(decoder.layers)
    if layers > count:
        raise ConfigError(f"model.freeze_text_layers={layers}, but {model.config.name_or_path or 'the model'}'s "
                         f"language model has {count} decoder layers; give at most {count}")
    return [model.get_input_embeddings(), *decoder.layers[:layers]]


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
