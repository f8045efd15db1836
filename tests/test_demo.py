"""The demo, in a reduced form: every stage runs and every report file is written."""

import json

import pytest
from PIL import Image

from doctune.demo import DemoSettings, run_demo

REDUCED = DemoSettings(train_docs=3, eval_docs=2, max_steps=2, batch_size=2, warmup_steps=0, eval_every=1,
                       curve_eval_samples=2, eval_batch_size=8, max_new_tokens=4, examples_shown=2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    return output, run_demo(output, REDUCED)


def test_reduced_demo_writes_report_curves_and_page(demo):
    tmp_path, report = demo
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == report
    for key in ("anls_before", "anls_after", "anls_blind"):
        assert 0.0 <= report[key] <= 1.0
    eval_rows = (tmp_path / "data" / "eval" / "data.jsonl").read_text().splitlines()
    assert report["num_eval"] == len(eval_rows) > 0 and report["train_seconds"] > 0
    with Image.open(tmp_path / "curves.png") as curves:
        assert curves.format == "PNG" and curves.width > 500
    html = (tmp_path / "report.html").read_text()
    first = json.loads(eval_rows[0])
    assert first["query"]["en"] in html and html.count('<div class="card">') == 2


def test_eval_pages_are_never_trained_on_and_blind_pages_are_blank(demo):
    tmp_path, _ = demo
    rows = {name: [json.loads(x) for x in (tmp_path / "data" / name / "data.jsonl").read_text().splitlines()]
            for name in ("train", "eval", "eval-blind")}
    train_pages = {Image.open(tmp_path / "data" / "train" / r["image"]).tobytes() for r in rows["train"]}
    eval_pages = {Image.open(tmp_path / "data" / "eval" / r["image"]).tobytes() for r in rows["eval"]}
    assert not train_pages & eval_pages
    for row in rows["eval-blind"]:
        page = Image.open(tmp_path / "data" / "eval-blind" / row["image"]).convert("L")
        assert page.getextrema() == (255, 255)
    assert [r["answers"] for r in rows["eval-blind"]] == [r["answers"] for r in rows["eval"]]


@pytest.mark.parametrize("method, frozen", [("full", True), ("lora", False)])
def test_demo_freezes_the_encoder_only_for_full_fine_tuning(tmp_path, method, frozen):
    from doctune.demo import _train_config

    config = _train_config(DemoSettings(method=method), tmp_path / "t.jsonl", tmp_path / "e.jsonl", tmp_path / "run")
    assert config.model.freeze_vision is frozen
