"""The pre-training scripts' pieces that the committed doctune-tiny depends on for correctness."""

import random
import sys
from pathlib import Path

import pytest
import torch
from transformers import Idefics2ForConditionalGeneration

from doctune.models import TINY_MODEL_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import pretrain_tiny  # noqa: E402
import reading_pages  # noqa: E402


@pytest.fixture(scope="module")
def vision():
    torch.manual_seed(0)
    return Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR).eval().model.vision_model


def test_crop_features_on_a_whole_page_equal_the_vision_model(vision):
    rows, cols = 22, 17
    pixels = torch.randn(1, 3, rows * 16, cols * 16)
    per_side = vision.embeddings.num_patches_per_side
    expected = vision(pixel_values=pixels, patch_attention_mask=torch.ones(1, rows, cols, dtype=torch.bool))
    ids = pretrain_tiny.page_position_ids(rows, cols, 0, 0, rows, cols, per_side)
    got = pretrain_tiny.crop_features(vision, pixels, ids[None])
    torch.testing.assert_close(got, expected.last_hidden_state)


def test_crop_position_ids_are_the_pages_own():
    whole = pretrain_tiny.page_position_ids(22, 17, 0, 0, 22, 17, 24).view(22, 17)
    crop = pretrain_tiny.page_position_ids(22, 17, 5, 9, 4, 8, 24).view(4, 8)
    assert torch.equal(crop, whole[5:9, 9:17])
    # Fed alone, a crop would be stretched over every bucket: the first row would reach the last column.
    assert int(whole[0].max()) < 24


def test_character_centres_follow_glyph_advances():
    edges = reading_pages.advance_edges("mil")
    assert edges[0] == 0 and edges[-1] == pytest.approx(1)
    widths = [b - a for a, b in zip(edges, edges[1:])]
    assert widths[0] > 2 * widths[1]  # 'm' is much wider than 'i'


def test_synth_pages_keep_characters_inside_their_words():
    page = reading_pages.synth_page("receipt", 3, random.Random(0))
    assert page.chars and page.qa
    width, height = page.image.size
    assert all(0 <= x <= width and 0 <= y <= height for _, x, y, _ in page.chars)


def test_densest_crop_picks_the_inked_window():
    ink = torch.zeros(20, 16)
    ink[12:14, 3:9] = 1
    r0, c0 = pretrain_tiny.densest_crop(ink, 4, 8, random.Random(0), tries=200)
    assert float(ink[r0 : r0 + 4, c0 : c0 + 8].sum()) == 12


def test_slot_accuracy_counts_only_filled_slots():
    logits = torch.zeros(1, 3, 5)
    logits[0, 0, 2] = logits[0, 1, 4] = logits[0, 2, 0] = 1
    targets = torch.tensor([[2, 3, 0]])  # the empty slot (0) is right but not counted
    assert pretrain_tiny.slot_accuracy(logits, targets) == (1, 2)
