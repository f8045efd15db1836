"""The demo, in a reduced form: every stage runs and every report file is written."""

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
from PIL import Image

from doctune.config import load_config
from doctune.data import PageConversations, load_docvqa
from doctune.demo import DemoSettings, _fine_tune, _fine_tune_both, run_demo
from doctune.errors import DoctuneError
from doctune.models import default_device, pick_dtype, resolve_precision

REDUCED = DemoSettings(train_docs=3, eval_docs=2, val_docs=1, max_steps=2, batch_size=2, warmup_steps=0, eval_every=1,
                       curve_eval_samples=2, eval_batch_size=8, max_new_tokens=4, num_beams=2,
                       examples_shown=2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The reduced demo, given a relative output folder as in the README's command."""
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        report = run_demo(Path("runs/demo"), REDUCED)
    return root / "runs" / "demo", report


def test_reduced_demo_writes_report_curves_and_page(demo):
    tmp_path, report = demo
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == report
    for key in ("anls_before", "anls_after", "anls_blind"):
        assert 0.0 <= report[key] <= 1.0
    eval_rows = (tmp_path / "data" / "eval" / "data.jsonl").read_text().splitlines()
    assert report["num_eval"] == len(eval_rows) > 0 and report["train_seconds"] > 0 and report["blind_train_seconds"] > 0
    assert report["side_by_side"] is (torch.get_num_threads() >= 2)  # CPU only here
    names = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}
    assert report["compute_dtype"] == names[pick_dtype("auto", torch.device(report["device"]))]
    with Image.open(tmp_path / "curves.png") as curves:
        assert curves.format == "PNG" and curves.width > 500
    html = (tmp_path / "report.html").read_text()
    first = json.loads(eval_rows[0])
    assert first["query"]["en"] in html and html.count('<div class="card">') == 2
    assert f"({report['compute_dtype']} on {report['device']})" in html
    assert f"answered by beam search ({REDUCED.num_beams} beams)" in html
    assert ("side by side with the blind control" in html) is report["side_by_side"]


def test_train_validation_and_eval_pages_are_apart_and_blind_pages_are_blank(demo):
    tmp_path, _ = demo
    names = ("train", "val", "eval", "val-blind", "eval-blind")
    rows = {name: [json.loads(x) for x in (tmp_path / "data" / name / "data.jsonl").read_text().splitlines()]
            for name in names}

    def pages(name):
        return {Image.open(tmp_path / "data" / name / r["image"]).tobytes() for r in rows[name]}

    train_pages, val_pages, eval_pages = pages("train"), pages("val"), pages("eval")
    assert val_pages and not train_pages & eval_pages and not val_pages & (train_pages | eval_pages)
    for name in ("val-blind", "eval-blind"):
        for row in rows[name]:
            page = Image.open(tmp_path / "data" / name / row["image"]).convert("L")
            assert page.getextrema() == (255, 255)
        assert [r["answers"] for r in rows[name]] == [r["answers"] for r in rows[name.removesuffix("-blind")]]


def test_the_blind_run_trains_on_the_same_conversations(demo):
    tmp_path, _ = demo
    reading, blind = (load_docvqa(str(tmp_path / "data" / name / "data.jsonl")) for name in ("train", "train-blind"))
    per_sample = REDUCED.questions_per_sample
    assert len(reading) == len(blind) and len({reading.page_key(i) for i in range(len(reading))}) == REDUCED.train_docs
    assert PageConversations(blind, per_sample).samples == PageConversations(reading, per_sample).samples


def test_the_curve_uses_the_validation_set_and_after_is_the_end_of_the_schedule(demo):
    tmp_path, report = demo
    for run in ("run", "run-blind"):
        config = load_config(tmp_path / run / "config.yaml")
        assert Path(config.data.eval).parent.name == run.replace("run", "val")
        assert config.eval.num_beams == REDUCED.num_beams > 1  # the curve decodes as the reported scores do
    scored = [json.loads(x)["id"] for x in (tmp_path / "run" / "best" / "predictions.jsonl").read_text().splitlines()]
    assert scored and all(i.startswith(f"{REDUCED.kind}-{REDUCED.val_seed}-") for i in scored)
    final = tmp_path / report["evaluated_after"]
    assert json.loads((final / "trainer_state.json").read_text())["step"] == REDUCED.max_steps


@pytest.mark.parametrize("method, frozen", [("full", True), ("lora", False)])
def test_demo_freezes_the_encoder_and_connector_only_for_full_fine_tuning(tmp_path, method, frozen):
    from doctune.demo import _train_config

    config = _train_config(DemoSettings(method=method, freeze_text_layers=2), tmp_path / "t.jsonl",
                           tmp_path / "e.jsonl", tmp_path / "run")
    assert config.model.freeze_vision is frozen
    assert config.model.freeze_connector is frozen
    assert config.model.freeze_text_layers == (2 if frozen else 0)  # adapters choose their weights themselves


def _losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # side by side with one blind thread leaves one for the reading run, on any machine
    yield
    torch.set_num_threads(threads)


def test_side_by_side_blind_run_trains_as_it_would_alone_on_one_thread(demo, tmp_path, two_threads):
    data = demo[0] / "data"
    # Precision resolved once, as run_demo does: left 'auto', the spawned blind process times bf16
    # against fp32 again, and on a loaded CPU it can choose otherwise than this one.
    precision = resolve_precision(REDUCED.precision, default_device())
    settings = REDUCED.model_copy(update={"max_steps": 10, "eval_every": 10, "precision": precision})
    runs = {name: (data / "train-blind" / "data.jsonl", data / "val-blind" / "data.jsonl", tmp_path / name)
            for name in ("reading", "blind", "alone")}
    _fine_tune_both(settings, 1, runs["reading"], runs["blind"])
    torch.set_num_threads(1)
    _fine_tune(settings, *runs["alone"])
    side, alone = _losses(tmp_path / "blind"), _losses(tmp_path / "alone")
    assert len(side) == 2 and side == pytest.approx(alone, rel=1e-5)


def test_a_failed_blind_run_is_reported_after_the_reading_run_finishes(demo, tmp_path, two_threads):
    data = demo[0] / "data"
    reading = (data / "train" / "data.jsonl", data / "val" / "data.jsonl", tmp_path / "run")
    missing = (tmp_path / "no-such.jsonl", data / "val" / "data.jsonl", tmp_path / "run-blind")
    with pytest.raises(RuntimeError, match="blind control's fine-tuning failed"):
        _fine_tune_both(REDUCED, 1, reading, missing)
    assert (tmp_path / "run" / "checkpoints").is_dir()  # the reading run's work is kept


def test_a_failed_reading_run_stops_the_blind_process(demo, tmp_path, two_threads):
    data = demo[0] / "data"
    missing = (tmp_path / "no-such.jsonl", data / "val" / "data.jsonl", tmp_path / "run")
    blind = (data / "train-blind" / "data.jsonl", data / "val-blind" / "data.jsonl", tmp_path / "run-blind")
    with pytest.raises(DoctuneError):
        _fine_tune_both(REDUCED.model_copy(update={"max_steps": 10_000}), 1, missing, blind)
    assert multiprocessing.active_children() == []
