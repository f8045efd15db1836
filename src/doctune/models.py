"""Load an Idefics2 checkpoint and prepare it for one of the four fine-tuning methods.

Everything model-specific lives here: the model class, the processor options and which parts an
adapter touches. ``full``, ``lora``, ``dora`` and ``qlora`` differ only in what
:func:`load_model` returns; the training loop never branches on the method.
"""

import logging
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    AutoProcessor,
    BitsAndBytesConfig,
    Idefics2ForConditionalGeneration,
)

from doctune.config import LoraSettings, ModelSettings
from doctune.errors import DoctuneError

log = logging.getLogger(__name__)


class UnsupportedError(DoctuneError, RuntimeError):
    """The requested method cannot run on this machine."""

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


def load_processor(name: str, do_image_splitting: bool = False, longest_edge: int | None = None):
    """Load the processor of ``name`` (hub id or folder), with the page-resolution options applied."""
    processor = AutoProcessor.from_pretrained(resolve_model_path(name), do_image_splitting=do_image_splitting)
    if longest_edge is not None:
        size = dict(processor.image_processor.size)
        size["longest_edge"] = longest_edge
        size["shortest_edge"] = min(size.get("shortest_edge") or longest_edge, longest_edge)
        processor.image_processor.size = size
    return processor


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products in hardware rather than emulating them.

    AMX tiles (recent Xeons) run them many times faster than fp32 (about 3 TFLOPS against 0.2-0.4
    on two Sapphire Rapids cores); AVX-512 bf16 instructions (recent AMD EPYCs, Cooper Lake Xeons)
    make doctune-tiny's demo take 0.83 of its fp32 time. With AVX2 only, bf16 is emulated and far
    slower than fp32.
    """
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``.

    'auto' takes bf16 on GPUs that support it and fp16 on other GPUs. On a CPU it takes bf16
    where the CPU runs it natively (with AMX, twice the speed of fp32 for doctune-tiny, training
    and generation alike) and fp32 elsewhere, where bf16 kernels are emulated and slower than fp32.

    Raises:
        ValueError: bf16/fp16 was asked for on a device that cannot run it.
    """
    on_gpu = device.type == "cuda"
    if precision == "auto":
        if not on_gpu:
            return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16" and on_gpu and not torch.cuda.is_bf16_supported():
        raise ValueError("precision bf16: this GPU has no bf16 support; use precision=fp16 or auto")
    if precision == "fp16" and not on_gpu:
        raise ValueError("precision fp16 needs a GPU; on CPU use precision=fp32 (or bf16)")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


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
    return model


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
