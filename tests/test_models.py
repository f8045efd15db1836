"""Model building blocks: precision choice, the QLoRA pre-flight check, adapter settings."""

import sys

import pytest
import torch

from doctune import models
from doctune.config import ModelSettings
from doctune.models import (
    UnsupportedError,
    check_qlora_supported,
    load_processor,
    lora_config,
    pick_dtype,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_on_cpu_is_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, native, dtype):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: native)
    assert pick_dtype("auto", CPU) == dtype
    assert pick_dtype("fp32", CPU) == torch.float32


def test_fp16_on_cpu_is_refused_with_the_alternative():
    with pytest.raises(ValueError, match="fp32"):
        pick_dtype("fp16", CPU)


def test_qlora_refuses_a_device_bitsandbytes_cannot_quantize_on():
    with pytest.raises(UnsupportedError, match="use method=lora or method=dora"):
        check_qlora_supported(torch.device("mps"))


def test_qlora_without_bitsandbytes_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(UnsupportedError, match="pip install"):
        check_qlora_supported(CPU)


def test_seed_recipe_adapter_config():
    config = lora_config(ModelSettings(method="lora"))
    assert (config.r, config.lora_alpha, config.lora_dropout, config.init_lora_weights) == (8, 8, 0.1, "gaussian")
    assert config.use_dora is False
    assert lora_config(ModelSettings(method="dora")).use_dora is True
    assert lora_config(ModelSettings(method="full")) is None


def test_processor_options_apply():
    processor = load_processor("doctune-tiny", do_image_splitting=True, longest_edge=200)
    assert processor.image_processor.do_image_splitting is True
    assert processor.image_processor.size["longest_edge"] == 200
