"""The pre-training scripts' pieces that the committed doctune-tiny depends on for correctness."""

import json
import random
import sys
from pathlib import Path

import pytest
import torch
from transformers import Idefics2ForConditionalGeneration

from doctune.models import TINY_MODEL_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import plot_budget  # noqa: E402
import pretrain_tiny  # noqa: E402
import reading_pages  # noqa: E402
import row_questions  # noqa: E402
import stage_files  # noqa: E402
import tiny_batches  # noqa: E402
import tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def vision():
    torch.manual_seed(0)
    return Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR).eval().model.vision_model


def test_crop_features_on_a_whole_page_equal_the_vision_model(vision):
    rows, cols = 22, 17
    pixels = torch.randn(1, 3, rows * 16, cols * 16)
    per_side = vision.embeddings.num_patches_per_side
    expected = vision(pixel_values=pixels, patch_attention_mask=torch.ones(1, rows, cols, dtype=torch.bool))
    ids = tiny_model.page_position_ids(rows, cols, 0, 0, rows, cols, per_side)
    got = tiny_model.crop_features(vision, pixels, ids[None])
    torch.testing.assert_close(got, expected.last_hidden_state)


def test_crop_position_ids_are_the_pages_own():
    whole = tiny_model.page_position_ids(22, 17, 0, 0, 22, 17, 24).view(22, 17)
    crop = tiny_model.page_position_ids(22, 17, 5, 9, 4, 8, 24).view(4, 8)
    assert torch.equal(crop, whole[5:9, 9:17])
    # Fed alone, a crop would be stretched over every bucket: the first row would reach the last column.
    assert int(whole[0].max()) < 24


def test_densest_crop_picks_the_inked_window():
    ink = torch.zeros(20, 16)
    ink[12:14, 3:9] = 1
    r0, c0 = tiny_batches.densest_crop(ink, 4, 8, random.Random(0), tries=200)
    assert float(ink[r0 : r0 + 4, c0 : c0 + 8].sum()) == 12


def test_slot_accuracy_counts_only_filled_slots():
    logits = torch.zeros(1, 3, 5)
    logits[0, 0, 2] = logits[0, 1, 4] = logits[0, 2, 0] = 1
    targets = torch.tensor([[2, 3, 0]])  # the empty slot (0) is right but not counted
    assert tiny_model.slot_accuracy(logits, targets) == (1, 2)


def test_patch_rows_cols_number_the_real_patches_only():
    pam = torch.zeros(1, 64, 48, dtype=torch.bool)
    pam[0, :48, :32] = True  # a 3 x 2 patch page padded to 4 x 3
    rows, cols = tiny_model.patch_rows_cols(pam, 16)
    assert rows.view(4, 3)[:3, :2].tolist() == [[0, 0], [1, 1], [2, 2]]
    assert cols.view(4, 3)[:3, :2].tolist() == [[0, 1], [0, 1], [0, 1]]
    assert (rows.view(4, 3)[3] == -100).all() and (cols.view(4, 3)[:, 2] == -100).all()


@pytest.mark.parametrize("layout", ["anchored", "stretched"])
def test_route_mask_gives_each_latent_its_cell(layout):
    from transformers import AutoProcessor

    args = pretrain_tiny.parse_args(["--latent-grid", "3", "4", "--latent-layout", layout])
    batcher = tiny_batches.Batcher(AutoProcessor.from_pretrained(TINY_MODEL_DIR), args)
    pam = torch.zeros(1, 64, 48, dtype=torch.bool)
    pam[0, :64, :32] = True  # 4 rows x 2 columns of patches on a 3 x 4 latent grid
    mask = batcher.route_mask(pam, 4, 3).view(4, 3, 4, 3)  # latent row, col, patch row, col
    if layout == "anchored":
        for r in range(4):
            for c in range(3):
                expected = torch.zeros(4, 3, dtype=torch.bool)
                if c < 2:
                    expected[r, c] = True  # one patch per latent; the third column is past the page
                assert torch.equal(mask[r, c], expected)
    else:
        # Every latent sees some patch, and the page's two columns are shared by three latents.
        assert mask.flatten(2).any(-1).all()
        assert not mask[..., 2].any()


def test_split_latents_share_their_patch_and_hold_its_halves():
    """Two latents per patch: both route to the patch, and between them they hold the characters
    the one latent per patch held, the left half's in the first."""
    from collections import Counter

    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    page = reading_pages.render_generic(3)
    one = tiny_batches.Batcher(processor, pretrain_tiny.parse_args([])).make([page], 1, random.Random(0))
    args = pretrain_tiny.parse_args(["--latent-grid", "36", "24", "--latents-per-patch", "2"])
    processor.image_seq_len = 36 * 24
    two = tiny_batches.Batcher(processor, args).make([page], 1, random.Random(0))

    pam = two["pixel_attention_mask"][0, 0]
    nh, nw = pam.size(0) // 16, pam.size(1) // 16
    rh, rw = int(pam[:, 0].sum()) // 16, int(pam[0].sum()) // 16
    mask = two["route_mask"].view(24, 36, nh, nw)
    for r, c in [(0, 0), (0, 1), (5, 7), (rh - 1, 2 * rw - 1)]:
        expected = torch.zeros(nh, nw, dtype=torch.bool)
        expected[r, c // 2] = True
        assert torch.equal(mask[r, c], expected)
    assert not mask[:, 2 * rw :].any()

    halves = two["latent_targets"][0].view(24, 18, 2, -1)
    whole = one["latent_targets"][0].view(24, 18, -1)
    filled = 0
    for r in range(24):
        for c in range(18):
            chars = whole[r, c][whole[r, c] > 0].tolist()
            if 0 < len(chars) < whole.size(-1):  # not cut at the slot count
                split = halves[r, c][halves[r, c] > 0].tolist()
                assert Counter(split) == Counter(chars), (r, c)
                filled += 1
    assert filled > 50 and (halves[..., 0, 0] > 0).sum() > 0 and (halves[..., 1, 0] > 0).sum() > 0


def test_precede_option_adds_questions_to_the_same_pages_and_makes_them_turns():
    from transformers import AutoProcessor

    plain = reading_pages.sample_pages(pretrain_tiny.parse_args(["--all-rows"]), random.Random(4), 6, True)
    args = pretrain_tiny.parse_args(["--all-rows", "--precede", "2"])
    pages = reading_pages.sample_pages(args, random.Random(4), 6, True)
    assert not any(q.startswith(row_questions.PRECEDES) for p in plain for q, _ in p.qa)
    for before, after in zip(plain, pages):
        assert before.image.tobytes() == after.image.tobytes()
        added = after.qa[len(before.qa):]
        assert after.qa[: len(before.qa)] == before.qa and len(added) == 2
        assert all(q.startswith(row_questions.PRECEDES) for q, _ in added)
    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    batch = tiny_batches.Batcher(processor, args).make(pages, 3, random.Random(0))
    for page, ids in zip(pages, batch["input_ids"]):
        text = processor.tokenizer.decode(ids)
        assert all(f"{q}" in text for q, _ in page.qa if q.startswith(row_questions.PRECEDES))


def test_every_training_page_gets_its_long_transcription():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    batcher = tiny_batches.Batcher(processor, pretrain_tiny.parse_args([]))
    page = reading_pages.render_generic(3)
    (question, answer), = [x for x in page.qa if x[0].startswith("Read on")]
    assert "\n" in answer and len(answer) <= 120
    for seed in range(3):
        batch = batcher.make([page], 2, random.Random(seed))
        text = processor.tokenizer.decode(batch["input_ids"][0])
        assert question in text and answer in text


def test_oracle_tokens_embed_a_latents_characters_in_slot_order():
    torch.manual_seed(0)
    embeddings = torch.randn(10, 16)
    oracle = tiny_model.OracleTokens(embeddings, slots=3, blank=5, seed=0)
    targets = torch.tensor([[[3, 0, 0], [3, 4, 0], [4, 3, 0], [0, 0, 0]]])
    tokens = oracle(targets)[0]

    def unit(v):
        return v / v.pow(2).mean().sqrt()

    torch.testing.assert_close(tokens[0], unit(embeddings[3]), rtol=1e-4, atol=1e-4)  # slot 0 is the character
    torch.testing.assert_close(tokens[3], unit(embeddings[5]), rtol=1e-4, atol=1e-4)  # no characters: the blank
    # Order matters: "34" and "43" are different tokens, both of unit RMS like the perceiver's output.
    assert not torch.allclose(tokens[1], tokens[2], atol=1e-2)
    torch.testing.assert_close(tokens.pow(2).mean(-1), torch.ones(4), rtol=1e-3, atol=1e-3)
    # A fixed table: the embeddings it was made from may change later without moving the targets.
    embeddings.add_(1.0)
    torch.testing.assert_close(oracle(targets)[0, 0], tokens[0])


def test_oracle_tokens_run_under_bf16_autocast():
    """``--bf16`` stages compute the oracle's tokens under autocast: the blank still fills empty latents."""
    torch.manual_seed(0)
    oracle = tiny_model.OracleTokens(torch.randn(10, 16), slots=3, blank=5, seed=0)
    targets = torch.tensor([[[3, 4, 0], [0, 0, 0]]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens = oracle(targets)[0].float()
    torch.testing.assert_close(tokens, oracle(targets)[0], rtol=2e-2, atol=2e-2)


def test_answers_right_needs_every_token_of_an_answer():
    sel = torch.tensor([[False, True, True, False, True], [True, True, False, False, False]])
    hits = torch.tensor([True, True, True, True, False])  # row 0: answers (1, 2) and (4); row 1: (0, 1)
    assert tiny_model.answers_right(hits, sel) == (2, 3)
    assert tiny_model.answers_right(torch.tensor([True, False, True, True, True]), sel) == (2, 3)


def test_lookup_schedule_grows_then_stops():
    lengths = [tiny_batches.lookup_length("12:2,48:1", step) for step in range(5)]
    assert lengths == [12, 12, 48, 0, 0]
    assert tiny_batches.lookup_length("", 0) == 0
    assert [tiny_batches.schedule_at("1:1,1-3:2", step) for step in range(4)] == ["1", "1-3", "1-3", ""]
    packed = [tiny_batches.packed_at("1:1,2/8@24:1", step, 96) for step in range(3)]
    assert packed == [("1", 96), ("2/8", 24), ("", 0)]


def test_packed_lookups_lay_their_string_into_the_latent_cells_in_order():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    args = pretrain_tiny.parse_args([])
    batcher = tiny_batches.Batcher(processor, args)
    tok = processor.tokenizer
    for pack, sizes in (("1", {1}), ("2-4", {2, 3, 4})):
        batch = batcher.packed_lookup_batch(3, 40, pack, random.Random(1))
        targets = batch["latent_targets"]
        assert targets.shape == (3, args.latent_grid[0] * args.latent_grid[1], args.latent_slots)
        seen = set()
        for ids, labels, cells in zip(batch["input_ids"], batch["labels"], targets):
            filled = cells[(cells > 0).any(-1)]
            seen |= {int((c > 0).sum()) for c in filled[:-1]}  # the last cell takes what is left
            string = "".join(tok.convert_ids_to_tokens(filled[filled > 0].tolist()))
            assert len(string) == 40 and not (cells[len(filled) :] > 0).any()  # cells filled from the first
            question = tok.decode(ids[ids != processor.image_token_id]).split("<end_of_utterance>")[0]
            answer = tok.decode(labels[labels >= 0]).replace("<end_of_utterance>", "").strip()
            key = question.split('"')[1]
            after = string.split(key)[1]
            assert string.count(key) == 1
            assert answer == (key + after[:6] if "Transcribe" in question else after[:6])
            assert int((ids == processor.image_token_id).sum()) == targets.size(1)  # one token per cell
        assert seen <= sizes and (len(sizes) == 1 or len(seen) > 1)
    with pytest.raises(ValueError, match="do not fit"):
        batcher.packed_lookup_batch(1, 500, "1", random.Random(0))


def test_packed_lookups_drawn_by_weight_leave_empty_cells_between_characters():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    batcher = tiny_batches.Batcher(processor, pretrain_tiny.parse_args([]))
    weighted, uniform = tiny_batches.CellPacking.parse("3/5/2"), tiny_batches.CellPacking.parse("1-3")
    assert (weighted.sizes, weighted.weights, weighted.mean, weighted.largest) == ((0, 1, 2), (3.0, 5.0, 2.0), 0.9, 2)
    assert (uniform.sizes, uniform.mean, uniform.largest) == ((1, 2, 3), 2.0, 3)
    tok = processor.tokenizer
    counts = {0: 0, 1: 0, 2: 0}
    for cells in batcher.packed_lookup_batch(8, 60, "3/5/2", random.Random(2))["latent_targets"]:
        used = cells[: int((cells > 0).any(-1).nonzero().max()) + 1]  # up to the last character
        for cell in used:
            counts[int((cell > 0).sum())] += 1
        string = "".join(tok.convert_ids_to_tokens(used[used > 0].tolist()))
        assert len(string) == 60 and not (cells[len(used) :] > 0).any()
    total = sum(counts.values())
    assert 0.2 < counts[0] / total < 0.4 and 0.1 < counts[2] / total < 0.3 and counts[1] > counts[2]
    with pytest.raises(ValueError, match="no cell a character"):
        batcher.packed_lookup_batch(1, 10, "1/0", random.Random(0))
    with pytest.raises(ValueError, match="do not fit"):
        batcher.packed_lookup_batch(1, 400, "9/1", random.Random(0))


def test_text_questions_hold_the_rows_that_answer_them():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    batcher = tiny_batches.Batcher(processor, pretrain_tiny.parse_args([]))
    page = reading_pages.render_generic(5)
    batch = batcher.text_batch([page], 4, random.Random(0), rows=3)
    assert not (batch["input_ids"] == processor.image_token_id).any()
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        user = processor.tokenizer.decode(ids).split("<end_of_utterance>")[0]
        answer = processor.tokenizer.decode(labels[labels >= 0]).replace("<end_of_utterance>", "").strip()
        assert user.startswith("User: ") and len(user.split("\n")) == 3 + 1  # three rows, then the question
        assert answer.split("\n")[0] in user


def test_one_step_of_each_pretraining_script_saves_a_plain_checkpoint(tmp_path):
    """Every loss of a language-model stage and the vision-only stage, one step each on one page:
    the stage chains in ``docs/pretrain.md`` run with today's code."""
    import json

    import pretrain_vision

    out = tmp_path / "stage"
    pretrain_tiny.main(["--init-from", str(TINY_MODEL_DIR), "--output", str(out), "--log", str(tmp_path / "lm.log"),
                        "--threads", "1", "--max-steps", "1", "--log-every", "1", "--batch-size", "1", "--turns", "2",
                        "--crops-per-page", "1", "--pos-weight", "1", "--oracle-weight", "1", "--oracle-lm", "0.5",
                        "--lm-start", "0", "--text-per-page", "1", "--lookup-schedule", "12:1", "--lookup-batch", "1",
                        "--packed-schedule", "2/6/2@24:1", "--packed-batch", "1", "--eval-pages", "1",
                        "--kinds", "receipt"])
    records = [json.loads(line) for line in (tmp_path / "lm.log").read_text().splitlines()]
    step = next(r for r in records if r.get("step") == 1 and "lm" in r)
    for loss in ("lm", "oracle", "route", "patch", "pos", "latent", "crop", "lookup", "packed", "text"):
        assert torch.isfinite(torch.tensor(step[loss])), loss
    assert set(records[-1]["final_eval"]) == {"generic", "receipt", "invoice"}
    assert stage_files.beside(out, stage_files.HEADS).exists()
    Idefics2ForConditionalGeneration.from_pretrained(out)  # a plain checkpoint, without the heads

    pretrain_vision.main(["--init-from", str(out), "--output", str(tmp_path / "vision"),
                          "--log", str(tmp_path / "vision.log"), "--threads", "1", "--max-steps", "1",
                          "--crops", "2", "--full-pages", "1", "--first-pages", "2", "--pages-per-step", "1",
                          "--capacity", "4", "--log-every", "1", "--kinds", "receipt"])
    last = json.loads((tmp_path / "vision.log").read_text().splitlines()[-1])
    assert set(last["final_page_acc"]) >= {"generic", "receipt"}
    Idefics2ForConditionalGeneration.from_pretrained(tmp_path / "vision")


def test_generation_reads_replaced_visual_tokens_in_page_order():
    from transformers import AutoProcessor

    import tiny_eval

    model = Idefics2ForConditionalGeneration.from_pretrained(TINY_MODEL_DIR).eval()
    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR)
    pages = [reading_pages.render_generic(s).image for s in range(3)]
    pairs = [(img, "What is written at the top?") for img in pages]
    own = []
    hook = model.model.connector.register_forward_hook(lambda m, i, out: own.extend(out.detach()))
    plain = tiny_eval.generate_answers(model, processor, pairs, max_new_tokens=6, batch_size=2)
    hook.remove()
    assert len(own) == 3  # one token set per page, in two batches
    assert tiny_eval.generate_answers(model, processor, pairs, 6, 2, visual_tokens=own) == plain
    assert not model.model.connector._forward_hooks  # the replacement ends with the call
    # The tokens reach the language model in page order: rotated, each row reads the next page.
    question = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": pairs[0][1]}]}]
    text = processor.apply_chat_template(question, add_generation_prompt=True)
    enc = processor(text=[text] * 3, images=[[img] for img in pages], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[:, -1]
        with tiny_eval.replaced_visual_tokens(model, own[1:] + own[:1]):
            rotated = model(**enc).logits[:, -1]
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)
    torch.testing.assert_close(rotated, logits[[1, 2, 0]], atol=1e-4, rtol=1e-4)


def test_a_stage_that_reuses_an_earlier_seed_is_warned(tmp_path, capsys):
    records = []
    first = pretrain_tiny.parse_args(["--output", str(tmp_path / "s1")])
    assert stage_files.data_seeds(first, records.append) == [0] and not records  # no lineage yet
    stage_files.beside(tmp_path / "s1", stage_files.SEEDS).write_text("[0]")
    fresh = pretrain_tiny.parse_args(["--init-from", str(tmp_path / "s1"), "--seed", "1", "--output", "x"])
    assert stage_files.data_seeds(fresh, records.append) == [0, 1] and not records
    again = pretrain_tiny.parse_args(["--init-from", str(tmp_path / "s1"), "--output", "x"])
    assert stage_files.data_seeds(again, records.append) == [0, 0]
    assert "--seed 0 was used by an earlier stage" in records[0]["warning"]
    assert "--seed 0 was used" in capsys.readouterr().err


def test_the_target_kind_is_trained_on_only_when_a_diagnostic_asks(capsys):
    with pytest.raises(SystemExit):
        pretrain_tiny.parse_args(["--kinds", "receipt", "invoice"])
    assert "invoice is the demo's held-out target kind" in capsys.readouterr().err
    args = pretrain_tiny.parse_args(["--kinds", "invoice", "--train-on-target"])
    assert args.kinds == ["invoice"] and args.train_on_target


def test_pre_training_holds_out_the_kind_the_demo_fine_tunes_on():
    from doctune.demo import DemoSettings

    assert reading_pages.TARGET_KIND == DemoSettings().kind


def test_budget_plot_reads_runs_in_order_and_names_a_bad_line(tmp_path):
    runs = tmp_path / "budget.jsonl"
    rows = [{"train_docs": 2304, "max_steps": 1152, "anls_after": 0.8, "train_seconds": 1000.0},
            {"train_docs": 576, "max_steps": 288, "anls_after": 0.7, "train_seconds": 250.0, "anls_before": 0.43}]
    runs.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert [run["train_docs"] for run in plot_budget.read_runs(runs)] == [576, 2304]
    plot_budget.plot(plot_budget.read_runs(runs), tmp_path / "budget.png")
    assert (tmp_path / "budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"train_docs": 576}) + "\n")
    with pytest.raises(SystemExit, match=r"budget.jsonl line 2: missing anls_after, max_steps"):
        plot_budget.read_runs(runs)
    runs.write_text(json.dumps(rows[0]) + "\n{train_docs: 576\n")
    with pytest.raises(SystemExit, match=r"budget.jsonl line 2: not valid JSON"):
        plot_budget.read_runs(runs)
