"""Changes a pre-training stage makes to a trained checkpoint's shape (more latents, a fresh
connector, grown layers, resized patches): what the rest of the model computed still holds, and
the result saves and loads as a plain Idefics2 checkpoint."""

import sys
from pathlib import Path

import pytest
import torch
from transformers import Idefics2ForConditionalGeneration

from doctune.models import TINY_MODEL_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import pretrain_tiny  # noqa: E402
import reading_pages  # noqa: E402
import tiny_model  # noqa: E402


def test_split_latents_start_as_copies_of_their_patchs_latent():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    model = Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR)
    old = model.model.connector.perceiver_resampler.latents.detach().clone()
    cols = 18
    rows = old.size(0) // cols
    args = pretrain_tiny.parse_args(["--latent-grid", str(2 * cols), str(rows), "--latents-per-patch", "2"])
    tiny_model.resize_latents(model, processor, 2 * old.size(0), args)
    new = model.model.connector.perceiver_resampler.latents.detach()
    assert processor.image_seq_len == model.config.perceiver_config.resampler_n_latents == new.size(0) == 2 * old.size(0)
    nearest = torch.cdist(new, old).argmin(-1).view(rows, 2 * cols)
    own = torch.arange(old.size(0)).view(rows, cols).repeat_interleave(2, dim=1)
    assert torch.equal(nearest, own)  # each new latent is its patch's old one, moved a little
    assert not torch.equal(new[0::2], new[1::2])
    with pytest.raises(SystemExit):
        pretrain_tiny.parse_args(["--latents-per-patch", "2", "--latent-layout", "stretched"])
    with pytest.raises(SystemExit):
        pretrain_tiny.parse_args(["--latents-per-patch", "0"])


def test_fresh_connector_keeps_the_other_weights_and_saves_a_plain_checkpoint(tmp_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    model = Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR)
    vision = {k: v.clone() for k, v in model.model.vision_model.state_dict().items()}
    args = pretrain_tiny.parse_args(["--perceiver-depth", "1", "--perceiver-kv-heads", "4"])
    tiny_model.fresh_connector(model, processor, 24, args)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    loaded = Idefics2ForConditionalGeneration.from_pretrained(tmp_path)
    perceiver = loaded.config.perceiver_config
    assert (perceiver.resampler_depth, perceiver.num_key_value_heads, perceiver.resampler_n_latents) == (1, 4, 24)
    for key, value in loaded.model.vision_model.state_dict().items():
        torch.testing.assert_close(value, vision[key])
    latents = loaded.model.connector.perceiver_resampler.latents
    assert latents.std() > 0  # distinct queries, not the all-ones of a config-built perceiver
    inputs = AutoProcessor.from_pretrained(tmp_path)(
        text=["<image>What is the total?"], images=[[reading_pages.render_generic(0).image]], return_tensors="pt")
    assert int((inputs["input_ids"] == loaded.config.image_token_id).sum()) == 24
    assert loaded(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


def test_grown_text_layers_leave_the_output_unchanged_and_learn(tmp_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    model = Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR)
    depth = model.config.text_config.num_hidden_layers
    inputs = processor(text=["<image>What is the total?"], images=[[reading_pages.render_generic(0).image]],
                       return_tensors="pt")
    with torch.no_grad():
        before = model(**inputs).logits
    with pytest.raises(ValueError, match=rf"after layer\(s\) \[{depth}\]"):
        tiny_model.grow_text_layers(model, [0, depth])  # the last layer is depth - 1: nothing is grown
    assert len(model.model.text_model.layers) == depth
    tiny_model.grow_text_layers(model, [0, depth - 1])
    model.save_pretrained(tmp_path)

    loaded = Idefics2ForConditionalGeneration.from_pretrained(tmp_path)
    layers = loaded.model.text_model.layers
    assert loaded.config.text_config.num_hidden_layers == len(layers) == depth + 2
    assert [layer.self_attn.layer_idx for layer in layers] == list(range(depth + 2))
    logits = loaded(**inputs).logits
    torch.testing.assert_close(logits, before)
    logits[0, -1].logsumexp(-1).backward()
    grown = layers[1]  # the layer inserted after layer 0
    assert grown.self_attn.o_proj.weight.grad.abs().sum() > 0
    assert grown.mlp.down_proj.weight.grad.abs().sum() > 0


def test_grown_vision_layers_leave_the_features_unchanged_and_learn(tmp_path):
    model = Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR)
    depth = model.config.vision_config.num_hidden_layers
    pixels = torch.randn(1, 3, 22 * 16, 17 * 16)
    mask = torch.ones(1, 22, 17, dtype=torch.bool)
    with torch.no_grad():
        before = model.model.vision_model(pixel_values=pixels, patch_attention_mask=mask).last_hidden_state
    with pytest.raises(ValueError, match=rf"vision encoder has {depth} layers"):
        tiny_model.grow_vision_layers(model, [depth])
    tiny_model.grow_vision_layers(model, [1, depth - 1])
    model.save_pretrained(tmp_path)

    loaded = Idefics2ForConditionalGeneration.from_pretrained(tmp_path)
    layers = loaded.model.vision_model.encoder.layers
    assert loaded.config.vision_config.num_hidden_layers == len(layers) == depth + 2
    after = loaded.model.vision_model(pixel_values=pixels, patch_attention_mask=mask).last_hidden_state
    torch.testing.assert_close(after, before)
    after.square().sum().backward()
    grown = layers[2]  # the layer inserted after layer 1
    assert grown.self_attn.out_proj.weight.grad.abs().sum() > 0
    assert grown.mlp.fc2.weight.grad.abs().sum() > 0


def test_grown_perceiver_layers_leave_the_visual_tokens_unchanged_and_learn(tmp_path):
    model = Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR)
    depth = model.config.perceiver_config.resampler_depth
    features = torch.randn(2, 40, model.config.vision_config.hidden_size)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False  # a smaller page: padded patches stay out of the new layer's reach too
    with torch.no_grad():
        before = model.model.connector(features, attention_mask=mask)
    with pytest.raises(ValueError, match=rf"perceiver has {depth} layers"):
        tiny_model.grow_perceiver_layers(model, [depth])
    tiny_model.grow_perceiver_layers(model, [depth - 1])
    model.save_pretrained(tmp_path)

    loaded = Idefics2ForConditionalGeneration.from_pretrained(tmp_path)
    layers = loaded.model.connector.perceiver_resampler.layers
    assert loaded.config.perceiver_config.resampler_depth == len(layers) == depth + 1
    after = loaded.model.connector(features, attention_mask=mask)
    torch.testing.assert_close(after, before)
    after.square().sum().backward()
    grown = layers[depth]
    assert grown.self_attn.o_proj.weight.grad.abs().sum() > 0
    assert grown.mlp.down_proj.weight.grad.abs().sum() > 0


def test_resized_patches_see_an_upsampled_page_as_the_old_ones_saw_it(tmp_path):
    from transformers import AutoProcessor

    model = Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR).eval()
    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    torch.manual_seed(0)
    rows, cols = 24, 18
    pixels = torch.nn.functional.avg_pool2d(torch.randn(1, 3, rows * 16, cols * 16), 3, 1, 1)

    def features(m, pix, patch):
        mask = torch.ones(1, pix.size(2) // patch, pix.size(3) // patch, dtype=torch.bool)
        with torch.no_grad():
            return m.model.vision_model(pixel_values=pix, patch_attention_mask=mask).last_hidden_state

    before = features(model, pixels, 16)
    tiny_model.resize_patches(model, processor, 20)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    loaded = Idefics2ForConditionalGeneration.from_pretrained(tmp_path).eval()
    vision = loaded.config.vision_config
    assert (vision.patch_size, vision.image_size) == (20, 480)
    upsampled = torch.nn.functional.interpolate(pixels, size=(rows * 20, cols * 20), mode="bilinear")
    after = features(loaded, upsampled, 20)
    assert after.shape == before.shape
    assert torch.nn.functional.cosine_similarity(after, before, dim=-1).mean() > 0.99
    page = AutoProcessor.from_pretrained(tmp_path)(
        text=["<image>What is the total?"], images=[[reading_pages.render_generic(0).image]], return_tensors="pt")
    assert max(page["pixel_values"].shape[-2:]) == 480
    assert int((page["input_ids"] == loaded.config.image_token_id).sum()) == loaded.config.perceiver_config.resampler_n_latents
    assert loaded(**page).logits.shape[1] == page["input_ids"].shape[1]


def test_a_stage_keeps_its_checkpoints_patches_unless_told_otherwise(tmp_path):
    def load(*options):
        return pretrain_tiny.load_model(pretrain_tiny.parse_args([*options, "--output", str(tmp_path / "out")]))

    with pytest.raises(SystemExit, match="pass --longest-edge 480"):
        load("--init-from", str(TINY_MODEL_DIR), "--patch-size", "20", "--longest-edge", "384")
    model, processor = load("--init-from", str(TINY_MODEL_DIR), "--patch-size", "20")
    assert processor.image_processor.size["longest_edge"] == model.config.vision_config.image_size == 480
    model.save_pretrained(tmp_path / "p20")
    processor.save_pretrained(tmp_path / "p20")

    args = pretrain_tiny.parse_args(["--init-from", str(tmp_path / "p20")])
    model, processor = pretrain_tiny.load_model(args)  # a next stage: the patches stay 20 px
    assert (args.patch_size, args.longest_edge) == (model.config.vision_config.patch_size, 480) == (20, 480)
    assert processor.image_processor.size["longest_edge"] == 480
    fresh = pretrain_tiny.parse_args([])
    assert (fresh.patch_size, fresh.longest_edge) == (16, 384)


def test_a_fresh_stage_builds_the_model_at_its_options_sizes(tmp_path):
    args = pretrain_tiny.parse_args(["--output", str(tmp_path / "out"), "--latent-grid", "12", "16",
                                     "--patch-size", "24", "--perceiver-depth", "2", "--perceiver-kv-heads", "2"])
    model, processor = pretrain_tiny.load_model(args)
    config = model.config
    assert (config.vision_config.patch_size, config.vision_config.image_size) == (24, 384)
    assert processor.image_processor.size["longest_edge"] == 384
    perceiver = config.perceiver_config
    assert (perceiver.resampler_n_latents, perceiver.resampler_depth, perceiver.num_key_value_heads) == (192, 2, 2)
    assert processor.image_seq_len == 192 == model.model.connector.perceiver_resampler.latents.shape[0]
    assert not (tmp_path / "out-init").exists()  # the random-weight build is a temporary step
