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
    resolve_precision,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize("faster, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_on_cpu_is_bf16_only_where_it_is_the_faster(monkeypatch, faster, dtype):
    monkeypatch.setattr(models, "cpu_bf16_is_faster", lambda: faster)
    assert pick_dtype("auto", CPU) == dtype
    assert resolve_precision("auto", CPU) == {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
    assert pick_dtype("fp32", CPU) == torch.float32
    assert resolve_precision("bf16", CPU) == "bf16"


@pytest.fixture
def fresh_timing():
    models.cpu_bf16_is_faster.cache_clear()
    yield
    models.cpu_bf16_is_faster.cache_clear()  # later tests time this machine's CPU again


@pytest.mark.parametrize("bf16_seconds, faster", [(0.5, True), (2.0, False)])
def test_cpus_with_bf16_instructions_take_the_dtype_whose_product_was_faster(
        monkeypatch, fresh_timing, bf16_seconds, faster):
    """A Xeon without AMX reports avx512_bf16 yet multiplies bf16 at half fp32's speed."""
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    seconds = {torch.bfloat16: bf16_seconds, torch.float32: 1.0}
    monkeypatch.setattr(models, "_matmul_seconds", seconds.__getitem__)
    assert models.cpu_bf16_is_faster() is faster


def test_cpus_that_emulate_bf16_keep_fp32_without_timing_it(monkeypatch, fresh_timing):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(models, "_matmul_seconds", lambda dtype: pytest.fail(f"timed {dtype} on an emulating CPU"))
    assert models.cpu_bf16_is_faster() is False


def test_fp16_on_cpu_is_refused_with_the_alternative():
    with pytest.raises(UnsupportedError, match="fp32"):
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


def test_freezing_more_text_layers_than_the_model_has_names_the_count():
    with pytest.raises(models.ConfigError, match=r"freeze_text_layers=7, but .* has 6 decoder layers"):
        models.load_model(ModelSettings(method="full", freeze_text_layers=7), CPU)
    model = models.load_model(ModelSettings(method="full", freeze_text_layers=6), CPU)
    text = {n: p.requires_grad for n, p in model.named_parameters() if n.startswith("model.text_model.")}
    assert [n for n, trains in text.items() if trains] == ["model.text_model.norm.weight"]  # above the layers
    assert model.lm_head.weight.requires_grad
