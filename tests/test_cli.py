"""The command-line contract: names, outputs and one-line errors."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from doctune.cli import build_parser, main

PARTS = ["train.batch_size=2", "train.grad_accum=1", "train.warmup_steps=0", "train.log_every=1"]


def test_train_flags_and_overrides_reach_the_run(docvqa_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "doctune-tiny", "--data", str(docvqa_folder), "--method", "full",
                 "--output", str(out), "--max-steps", "1", *PARTS, "train.learning_rate=5e-4"])
    assert code == 0
    saved = (out / "config.yaml").read_text()
    assert "method: full" in saved and "learning_rate: 0.0005" in saved and "max_steps: 1" in saved
    assert f"run folder: {out}" in capsys.readouterr().out


def test_unknown_setting_is_a_one_line_error_naming_the_key(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  learning_rat: 0.1\n")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "train.learning_rat: unknown key" in err and "Traceback" not in err


def test_eval_writes_metrics_and_predictions(docvqa_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--model", "doctune-tiny", "--data", str(docvqa_folder), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"anls", "exact_match", "num_samples"} and metrics["num_samples"] == 4
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert {"question", "prediction", "answers", "anls"} <= set(rows[0])
    assert json.loads(capsys.readouterr().out) == metrics


def test_eval_of_a_training_run_uses_its_best_checkpoint(docvqa_folder, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(docvqa_folder), "--output", str(run), "--max-steps", "1",
                 "--method", "lora", *PARTS, "train.eval_every=1", "data.max_eval_samples=2"]) == 0
    assert main(["eval", "--model", str(run), "--data", str(docvqa_folder), "--output", str(tmp_path / "e")]) == 0


def test_score_prints_metrics_and_writes_per_sample(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"prediction": "Bengaluru", "answers": ["bengaluru"]}) + "\n"
                     + json.dumps({"prediction": "x", "answers": ["y"], "id": 7}) + "\n")
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(preds), "--per-sample", str(out)]) == 0
    assert json.loads(capsys.readouterr().out) == {"anls": 0.5, "exact_match": 0.5, "num_samples": 2}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["anls"] for r in rows] == [1.0, 0.0] and rows[1]["id"] == 7


def _page(path, size=(120, 160)):
    Image.new("RGB", size, "white").save(path)
    return path


def test_predict_answers_about_an_image_and_a_pdf_page(tmp_path, capsys):
    png = _page(tmp_path / "page.png")
    assert main(["predict", "--model", "doctune-tiny", "--image", str(png), "--question", "Total?",
                 "--max-new-tokens", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["question"] == "Total?" and isinstance(result["answer"], str) and result["page"] == 1
    pdf = tmp_path / "two.pdf"
    Image.new("RGB", (120, 160), "white").save(pdf, save_all=True, append_images=[Image.new("RGB", (120, 160))])
    assert main(["predict", "--model", "doctune-tiny", "--image", str(pdf), "--page", "2",
                 "--question", "Total?", "--max-new-tokens", "4", "--num-beams", "2"]) == 0


@pytest.mark.parametrize("command", ["eval", "predict", "serve"])
def test_generation_options_reject_zero_beams_before_loading_anything(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--model", "m", "--num-beams", "0"])
    assert exit_info.value.code == 2 and "--num-beams: must be 1 or more, got 0" in capsys.readouterr().err


def test_predict_on_the_cpu_prints_no_backend_warnings(tmp_path):
    # A fresh process, so that peft and bitsandbytes are imported under the command's logging.
    png = _page(tmp_path / "page.png")
    done = subprocess.run([sys.executable, "-m", "doctune.cli", "predict", "--model", "doctune-tiny", "--image",
                           str(png), "--question", "Total?", "--max-new-tokens", "2", "--json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["question"] == "Total?"
    assert "WARNING" not in done.stderr, done.stderr


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"], ids=["empty", "text", "truncated"])
def test_predict_on_a_bad_file_is_a_one_line_error(tmp_path, capsys, content):
    bad = tmp_path / "bad.png"
    if content == "truncated":
        _page(tmp_path / "ok.png", (400, 400))
        content = (tmp_path / "ok.png").read_bytes()[:200]
    bad.write_bytes(content)
    assert main(["predict", "--model", "doctune-tiny", "--image", str(bad), "--question", "Total?"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "Traceback" not in err


def test_predict_pdf_page_out_of_range_names_the_page_count(tmp_path, capsys):
    pdf = tmp_path / "one.pdf"
    Image.new("RGB", (100, 100), "white").save(pdf)
    assert main(["predict", "--model", "doctune-tiny", "--image", str(pdf), "--page", "3", "--question", "Q?"]) == 2
    assert "1 page" in capsys.readouterr().err


def test_synth_writes_a_dataset_that_train_and_eval_read(tmp_path, capsys):
    out = tmp_path / "docs"
    assert main(["synth", "--kinds", "invoice", "receipt", "--num-docs", "2", "--seed", "3", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"invoice", "receipt"}
    assert all((out / r["image"]).is_file() and r["answers"] and r["query"]["en"] for r in rows)
    from doctune.data import load_docvqa
    assert len(load_docvqa(str(out / "data.jsonl"))) == len(rows)


def test_a_misspelt_demo_setting_is_a_one_line_error(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo"), "max_step=3"]) == 2
    err = capsys.readouterr().err
    assert "max_step: unknown key" in err and "Traceback" not in err
    assert not (tmp_path / "demo").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on a GPU")
def test_demo_in_fp16_on_a_cpu_is_a_one_line_error_before_anything_is_written(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo"), "precision=fp16"]) == 2
    err = capsys.readouterr().err
    assert "precision fp16 needs a GPU; on CPU use precision=fp32" in err and "Traceback" not in err
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("command", ["predict", "train"])
def test_a_model_that_cannot_be_found_is_a_one_line_error_naming_it(command, docvqa_folder, tmp_path, capsys):
    args = {"predict": ["--image", str(tmp_path / "page.png"), "--question", "Total?"],
            "train": ["--data", str(docvqa_folder), "--output", str(tmp_path / "run"), "--max-steps", "1"]}[command]
    Image.new("RGB", (64, 64), "white").save(tmp_path / "page.png")
    assert main([command, "--model", str(tmp_path / "no-such-model"), *args]) == 2
    err = capsys.readouterr().err
    assert f"cannot load the model '{tmp_path / 'no-such-model'}'" in err and "a model folder" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()
