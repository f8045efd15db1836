"""Training behaviour of every method on the tiny model: what changes, what is saved, resume."""

import json

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from peft import PeftModel

import doctune.train as train_module
from doctune.checkpoint import (
    CHECKPOINTS,
    LAST,
    TrainerState,
    find_model_dir,
    load_for_inference,
)
from doctune.config import ConfigError, load_config
from doctune.data import PageConversations, load_docvqa
from doctune.models import MODEL_CLASS, TINY_MODEL_DIR, load_model, load_processor
from doctune.prompt import collate_for_training
from doctune.synth import write_dataset
from doctune.train import RunFolderError, _BatchStream, _optimizer_step, epoch_batches, train

PROCESSOR_FILES = {"chat_template.jinja", "processor_config.json", "tokenizer.json", "tokenizer_config.json"}
STATE_FILES = {"config.yaml", "versions.json", "trainer_state.json", "training_state.pt"}
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "README.md"}
FULL_FILES = {"config.json", "generation_config.json", "model.safetensors"}


def make_config(folder, output, *overrides):
    return load_config(None, [
        f"data.train={folder}", f"train.output={output}", "train.batch_size=2", "train.grad_accum=1",
        "train.max_steps=2", "train.learning_rate=1e-3", "train.warmup_steps=0", "train.log_every=1",
        "train.save_every=2", *overrides,
    ])


@pytest.fixture
def captured_model(monkeypatch):
    """Keep the model train() builds, with a copy of every weight taken before training."""
    seen = {}
    original = train_module.load_model

    def load_and_snapshot(settings, device):
        model = original(settings, device)
        seen["model"] = model
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return model

    monkeypatch.setattr(train_module, "load_model", load_and_snapshot)
    return seen


METHODS = [
    ("full", []),
    ("full", ["model.freeze_vision=true"]),
    ("full", ["model.freeze_vision=true", "model.freeze_connector=true"]),
    ("full", ["model.freeze_vision=true", "model.freeze_connector=true", "model.freeze_text_layers=1"]),
    ("lora", []),
    ("dora", []),
    ("qlora", []),
    ("qlora", ["model.lora.use_dora=true"]),
]


@pytest.mark.parametrize(("method", "extra"), METHODS, ids=["full", "full-frozen-vision", "full-frozen-vision-connector", "full-frozen-to-text-layer-1", "lora", "dora", "qlora", "qdora"])
def test_trainable_parameters_change_and_frozen_ones_do_not(docvqa_folder, tmp_path, captured_model, method, extra):
    train(make_config(docvqa_folder, tmp_path / "run", f"model.method={method}", *extra))
    model, before = captured_model["model"], captured_model["before"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing was trainable"
    for name, param in model.named_parameters():
        changed = not torch.equal(param.detach(), before[name])
        if name in trainable and name.endswith("lora_B.default.weight"):
            assert changed, f"{name} was trainable but did not change"
        elif name not in trainable:
            assert not changed, f"{name} was frozen but changed"
    changed_trainable = [n for n in trainable if not torch.equal(dict(model.named_parameters())[n].detach(), before[n])]
    assert len(changed_trainable) >= 0.9 * len(trainable)
    if method == "full" and extra:
        assert not any(n.startswith("model.vision_model.") for n in trainable)
        connector_frozen = "model.freeze_connector=true" in extra
        assert any(n.startswith("model.connector.") for n in trainable) is not connector_frozen
        assert any(n.startswith("model.text_model.") for n in trainable)
        text_frozen = "model.freeze_text_layers=1" in extra
        assert any(n.startswith(("model.text_model.embed_tokens.", "model.text_model.layers.0.")) for n in trainable) \
            is not text_frozen
        assert any(n.startswith("model.text_model.layers.1.") for n in trainable)
    if method != "full":
        assert not any("vision_model" in n for n in trainable)
    if method == "qlora":
        import bitsandbytes as bnb
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()), "qlora did not quantize to 4-bit"


@pytest.mark.parametrize(("method", "weights"), [("lora", ADAPTER_FILES), ("full", FULL_FILES)])
def test_checkpoint_folder_holds_exactly_the_expected_files(docvqa_folder, tmp_path, method, weights):
    run = train(make_config(docvqa_folder, tmp_path / "run", f"model.method={method}", "train.save_every=1"))
    steps = sorted(p.name for p in (run / CHECKPOINTS).iterdir() if p.name != LAST)
    assert steps == ["step-00000001", "step-00000002"]
    assert (run / CHECKPOINTS / LAST).resolve().name == "step-00000002"
    files = {p.name for p in (run / CHECKPOINTS / "step-00000002").iterdir()}
    assert files == weights | PROCESSOR_FILES | STATE_FILES
    state = json.loads((run / CHECKPOINTS / "step-00000002" / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["batches_in_epoch"] == 2


def test_a_compiled_run_trains_as_the_eager_one_and_saves_the_same_plain_weights(docvqa_folder, tmp_path,
                                                                                compile_counters):
    from safetensors.torch import load_file

    settings = ["model.method=full", "model.precision=fp32"]
    eager = train(make_config(docvqa_folder, tmp_path / "eager", *settings))
    compiled = train(make_config(docvqa_folder, tmp_path / "compiled", *settings, "train.compile=true"))
    assert compile_counters["stats"]["unique_graphs"] > 0  # the steps ran through compiled graphs
    assert _losses(compiled) == pytest.approx(_losses(eager), rel=2e-3)  # kernels sum in other orders
    start = load_file(TINY_MODEL_DIR / "model.safetensors")
    ends = [load_file(run / CHECKPOINTS / "step-00000002" / "model.safetensors") for run in (eager, compiled)]
    assert ends[0].keys() == ends[1].keys() == start.keys()  # no torch.compile wrapper names in the saved model
    # Adam's first steps move each weight by about the learning rate whatever its gradient's size, so
    # rounding can flip a tiny gradient's step; the two runs' updates must still point the same way.
    updates = [torch.cat([(end[name].float() - start[name].float()).flatten() for name in start]) for end in ends]
    assert updates[0].abs().max() > 1e-4
    assert torch.nn.functional.cosine_similarity(*updates, dim=0) > 0.99


def test_only_the_newest_checkpoints_are_kept(docvqa_folder, tmp_path):
    run = train(make_config(docvqa_folder, tmp_path / "run", "model.method=full", "train.max_steps=3",
                            "train.save_every=1", "train.keep_last=2"))
    assert sorted(p.name for p in (run / CHECKPOINTS).glob("step-*")) == ["step-00000002", "step-00000003"]


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


@pytest.fixture(scope="module")
def receipts(tmp_path_factory):
    """Three synthetic receipts with several questions each (a doctune synth folder)."""
    return write_dataset(tmp_path_factory.mktemp("receipts"), ["receipt"], 3, seed=5).parent


@pytest.mark.parametrize("data, per_sample, by_length", [("docvqa", 1, False), ("receipts", 4, False), ("receipts", 2, True)],
                         ids=["one-question", "conversations", "conversations-by-length"])
def test_a_killed_and_resumed_run_reaches_the_same_loss(request, data, per_sample, by_length, tmp_path, monkeypatch):
    # LoRA dropout 0.1 makes the run depend on the RNG state, which resume must restore.
    docvqa_folder = request.getfixturevalue({"docvqa": "docvqa_folder", "receipts": "receipts"}[data])
    settings = ["model.method=lora", "train.max_steps=6", "train.save_every=1",
                f"data.questions_per_sample={per_sample}", f"train.group_by_length={str(by_length).lower()}"]
    whole = train(make_config(docvqa_folder, tmp_path / "whole", *settings))

    original = train_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        path = original(*args, **kwargs)
        if path.name == "step-00000003":
            raise KeyboardInterrupt("simulated kill after step 3")
        return path

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    config = make_config(docvqa_folder, tmp_path / "split", *settings)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(train_module, "save_checkpoint", original)
    resumed = train(config, resume=True)

    expected, got = _losses(whole), _losses(resumed)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):  # steps 4-6 ran after the resume, crossing into the second epoch
        assert got[step] == pytest.approx(expected[step], rel=1e-5)
    a = torch.load(whole / CHECKPOINTS / LAST / "training_state.pt", weights_only=False)
    b = torch.load(resumed / CHECKPOINTS / LAST / "training_state.pt", weights_only=False)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_resume_refuses_changed_settings(docvqa_folder, tmp_path):
    train(make_config(docvqa_folder, tmp_path / "run", "model.method=full"))
    with pytest.raises(ConfigError, match=r"train.learning_rate: 0.001 -> 0.01"):
        train(make_config(docvqa_folder, tmp_path / "run", "model.method=full", "train.learning_rate=0.01"), resume=True)


def test_runs_in_one_process_each_get_their_own_precision(docvqa_folder, tmp_path):
    for precision in ("bf16", "fp32"):
        train(make_config(docvqa_folder, tmp_path / precision, "model.method=full", "train.max_steps=1",
                          f"model.precision={precision}"))
    assert AcceleratorState().mixed_precision == "no"


def test_a_second_run_into_the_same_folder_is_refused(docvqa_folder, tmp_path):
    config = make_config(docvqa_folder, tmp_path / "run", "model.method=full", "train.max_steps=1")
    train(config)
    with pytest.raises(RunFolderError, match="--resume"):
        train(config)


@pytest.mark.parametrize("mistake", ["data.train=missing.jsonl", "model.name=no-such-model-folder"])
def test_a_run_that_fails_before_training_leaves_no_folder_to_block_the_corrected_one(docvqa_folder, tmp_path,
                                                                                      mistake):
    run = tmp_path / "run"
    with pytest.raises(Exception, match="missing.jsonl|no-such-model-folder"):
        train(make_config(docvqa_folder, run, "model.method=full", "train.max_steps=1", mistake))
    assert not run.exists()
    train(make_config(docvqa_folder, run, "model.method=full", "train.max_steps=1"))
    assert (run / "config.yaml").is_file()


def _first_step(folder, output, batch_size, grad_accum):
    """Loss, token count and gradients of one optimizer step's worth of micro-batches."""
    config = make_config(folder, output, "model.method=full", f"train.batch_size={batch_size}",
                         f"train.grad_accum={grad_accum}")
    accelerator = Accelerator()
    model = load_model(config.model, accelerator.device)
    samples = PageConversations(load_docvqa(str(folder)))
    stream = _BatchStream(accelerator, samples, load_processor("doctune-tiny"), config, TrainerState())
    loss, tokens = _optimizer_step(accelerator, model, stream, config)
    return loss, tokens, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_accumulation_gives_the_gradient_of_a_bigger_batch(docvqa_folder, tmp_path):
    # Compared before the optimizer: Adam's first step divides by |grad|, so float noise in
    # near-zero gradients would be blown up to the learning rate in the weights.
    big_loss, big_tokens, big = _first_step(docvqa_folder, tmp_path / "big", 4, 1)
    small_loss, small_tokens, small = _first_step(docvqa_folder, tmp_path / "small", 2, 2)
    assert big_tokens == small_tokens > 0
    assert small_loss == pytest.approx(big_loss, rel=1e-5)
    assert big.keys() == small.keys() and len(big) > 100
    # Key-projection biases have a mathematically zero gradient (softmax ignores a per-query
    # constant); their ~1e-8 float noise differs with batching, hence an absolute floor of 1e-6,
    # about a thousandth of the typical gradient here. Deep in the vision encoder, fp32 sums in
    # another order move single elements by ~2e-6 too, so the floor also scales with the tensor's
    # largest gradient (1e-4 of it); a wrong loss scale or a dropped micro-batch is ~1e0 of it.
    for name in big:
        atol = max(1e-6, 1e-4 * big[name].abs().max().item())
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=atol, msg=lambda m: f"{name}: {m}")


def test_gradient_accumulation_matches_a_bigger_batch_through_training(docvqa_folder, tmp_path):
    # fp32: on a CPU with native bf16 'auto' is bf16, whose rounding differs with the batch shape by ~2e-4
    # of the loss, which would hide an accumulation error of that size.
    common = ["model.method=full", "model.precision=fp32", "train.max_steps=1", "train.save_every=1",
              "train.weight_decay=0"]
    big = train(make_config(docvqa_folder, tmp_path / "big", *common, "train.batch_size=4", "train.grad_accum=1"))
    small = train(make_config(docvqa_folder, tmp_path / "small", *common, "train.batch_size=2", "train.grad_accum=2"))
    logged = [[json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][0] for run in (big, small)]
    assert logged[1]["loss"] == pytest.approx(logged[0]["loss"], rel=1e-5)
    assert logged[1]["grad_norm"] == pytest.approx(logged[0]["grad_norm"], rel=1e-5)


def test_merged_lora_gives_the_outputs_of_base_plus_adapter(docvqa_folder, tmp_path):
    run = train(make_config(docvqa_folder, tmp_path / "run", "model.method=lora", "train.eval_every=2",
                            "data.max_eval_samples=2"))
    directory, config = find_model_dir(str(run))
    assert directory == str(run / "best") and config.model.method == "lora"
    merged, processor = load_for_inference(str(run), torch.device("cpu"), "fp32")
    unmerged = PeftModel.from_pretrained(MODEL_CLASS.from_pretrained(TINY_MODEL_DIR), directory).eval()
    from PIL import Image

    from doctune.prompt import collate_for_generation
    batch = collate_for_generation(processor, [Image.new("RGB", (90, 120), "white")], ["What is the total?"])
    with torch.no_grad():
        merged_logits, unmerged_logits = merged(**batch).logits, unmerged(**batch).logits
        base_logits = MODEL_CLASS.from_pretrained(TINY_MODEL_DIR).eval()(**batch).logits
    # Merging changes the order of fp32 sums: with logits up to ~25 the two differ by up to ~3e-5.
    torch.testing.assert_close(merged_logits, unmerged_logits, rtol=1e-4, atol=1e-4)
    # and the adapter really changed the model, by far more than that tolerance
    assert (base_logits - merged_logits).abs().max() > 1e-2


def test_epoch_batches_without_lengths_are_a_plain_shuffle():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(7 + 1)).tolist()
    assert epoch_batches(10, 3, seed=7, epoch=1) == [order[0:3], order[3:6], order[6:9], order[9:]]


def test_batches_grouped_by_length_hold_similar_lengths_in_a_shuffled_order():
    lengths = [int(x) for x in torch.randint(10, 1000, (300,), generator=torch.Generator().manual_seed(0))]

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    grouped = epoch_batches(300, 4, seed=3, epoch=0, lengths=lengths)
    assert sorted(i for b in grouped for i in b) == list(range(300))
    assert grouped == epoch_batches(300, 4, seed=3, epoch=0, lengths=lengths)  # resume sees the same batches
    assert grouped != epoch_batches(300, 4, seed=3, epoch=1, lengths=lengths)
    assert padding(grouped) < padding(epoch_batches(300, 4, seed=3, epoch=0)) / 10
    firsts = [lengths[b[0]] for b in grouped]
    assert firsts != sorted(firsts, reverse=True) and firsts != sorted(firsts)  # not longest-first


def test_sample_lengths_differ_from_the_trained_lengths_by_one_constant(receipts):
    processor = load_processor("doctune-tiny")
    samples = PageConversations(load_docvqa(str(receipts)), per_sample=2)
    lengths = train_module.sample_lengths(processor, samples)
    trained = [train_module.collate(processor, [samples[i]])["input_ids"].shape[1] for i in range(len(samples))]
    assert len(set(trained)) > 1  # samples of several lengths
    assert len({t - n for t, n in zip(trained, lengths)}) == 1  # the page's image tokens, the same for each page


def test_a_batch_without_its_padding_mask_gives_the_same_loss_and_gradients(receipts):
    processor = load_processor("doctune-tiny")
    samples = PageConversations(load_docvqa(str(receipts)), per_sample=3)
    lengths = train_module.sample_lengths(processor, samples)
    pair = [samples[lengths.index(min(lengths))], samples[lengths.index(max(lengths))]]
    batch = train_module.collate(processor, pair)
    assert "attention_mask" not in batch
    padded = collate_for_training(processor, [s[0].image for s in pair],
                                  [[(e.question, e.answers[0]) for e in s] for s in pair])
    assert (padded["attention_mask"] == 0).sum() == max(lengths) - min(lengths)  # the short chat is padded
    model = MODEL_CLASS.from_pretrained(TINY_MODEL_DIR, dtype=torch.float32)

    def loss_and_gradients(inputs):
        model.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    (loss, grads), (masked_loss, masked_grads) = loss_and_gradients(batch), loss_and_gradients(padded)
    assert loss == pytest.approx(masked_loss, rel=1e-5)
    # The two attention paths sum in different orders: fp32 rounding differs by about 1e-6 of the
    # largest gradient. A pad that real tokens attend to changes the loss and most gradients.
    atol = 1e-5 * max(g.abs().max().item() for g in masked_grads)
    for grad, masked in zip(grads, masked_grads, strict=True):
        torch.testing.assert_close(grad, masked, rtol=1e-4, atol=atol)
