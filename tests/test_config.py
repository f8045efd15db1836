"""Settings: every shipped preset loads, typos and bad values are errors that say where."""

import pytest

from doctune.config import PRESETS_DIR, ConfigError, load_config

PRESETS = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def test_the_seed_strategies_and_a_cpu_preset_ship():
    assert {"idefics2-8b-qlora", "idefics2-8b-dora", "idefics2-8b-full", "tiny-cpu"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_shipped_preset_loads(name):
    config = load_config(name)
    assert config.data.train is not None


def test_seed_recipe_adapter_defaults():
    lora = load_config("idefics2-8b-qlora").model.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.init) == (8, 8, 0.1, "gaussian")
    assert "perceiver_resampler" in lora.target_modules and "vision" not in lora.target_modules


def test_overrides_are_typed_and_nested():
    config = load_config("tiny-cpu", ["train.learning_rate=2e-4", "model.lora.r=16", "data.skip_invalid=true"])
    assert config.train.learning_rate == 2e-4 and config.model.lora.r == 16 and config.data.skip_invalid is True


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("model:\n  methd: lora\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: invalid settings\n  model\.methd: unknown key"):
        load_config(file)


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match="model.method"):
        load_config(None, ["model.method=adapter"])
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(None, ["train.max_steps=0"])
    with pytest.raises(ConfigError, match="freeze_vision"):
        load_config(None, ["model.method=lora", "model.freeze_vision=true"])
    with pytest.raises(ConfigError, match="freeze_connector"):
        load_config(None, ["model.method=dora", "model.freeze_connector=true"])
    with pytest.raises(ConfigError, match="freeze_text_layers"):
        load_config(None, ["model.method=lora", "model.freeze_text_layers=2"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.max_steps"])


def test_unknown_preset_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="tiny-cpu"):
        load_config("no-such-preset")
