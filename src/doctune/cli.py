"""The ``doctune`` command line: train, eval, score, predict, serve, synth, demo.

Each subcommand is a thin layer that turns arguments into a library call; user errors (bad
settings, bad data, bad files) end with a one-line message and exit status 2, anything
unexpected keeps its traceback.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from doctune.errors import DoctuneError


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model", description="Fine-tune a model. Settings come from "
                       "--config (a YAML file or a shipped preset name), then the flags, then key=value overrides.")
    p.add_argument("--config", help="YAML settings file or preset name (e.g. tiny-cpu, idefics2-8b-qlora)")
    p.add_argument("--model", help="hub id, local model folder or doctune-tiny")
    p.add_argument("--data", help="training data: hub id, save_to_disk folder, parquet file/folder or JSONL")
    p.add_argument("--eval-data", help="evaluation data (default: the training source's eval split)")
    p.add_argument("--method", choices=["full", "lora", "dora", "qlora"])
    p.add_argument("--output", help="run folder")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.learning_rate=2e-4 model.lora.r=16")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _add_generation_options(p) -> None:
    """How answers are generated: shared by eval, predict and serve."""
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    p.add_argument("--num-beams", type=_positive_int, default=1,
                   help="1 answers greedily; more runs beam search, about that many times the decoding work")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score a model with ANLS on a dataset")
    p.add_argument("--model", required=True, help="hub id, model folder, run folder, checkpoint or doctune-tiny")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--language", default="en")
    p.add_argument("--output", required=True, help="folder for metrics.json and predictions.jsonl")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--max-samples", type=_positive_int)
    p.add_argument("--skip-invalid", action="store_true", help="skip and count bad records instead of stopping")
    _add_generation_options(p)


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="score a JSONL file of predictions from any system")
    p.add_argument("predictions", help="JSONL rows holding 'prediction' and 'answers'")
    p.add_argument("--per-sample", help="write each row back with its 'anls' to this JSONL file")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="answer a question about an image or PDF page")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True, help="PNG, JPEG, TIFF, WebP or PDF")
    p.add_argument("--question", required=True)
    p.add_argument("--page", type=int, default=1, help="page of a PDF or multi-page TIFF (1-based)")
    _add_generation_options(p)
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the bare answer")


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="generate synthetic business documents with questions and answers")
    p.add_argument("--output", required=True)
    p.add_argument("--kinds", nargs="+", default=["invoice"], help="document kinds (domains)")
    p.add_argument("--num-docs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.0, help="scan noise strength in [0, 1]")
    p.add_argument("--workers", type=int, default=None,
                   help="processes rendering pages (default: one per core, at most 8); any number writes the same set")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="fine-tune doctune-tiny on a new kind of document and show before/after")
    p.add_argument("--output", required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="demo settings, e.g. max_steps=100 train_docs=200")


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="answer questions about uploaded pages over HTTP")
    p.add_argument("--model", required=True, help="hub id, model folder, run folder, checkpoint or doctune-tiny")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    _add_generation_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doctune", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_eval, _add_score, _add_predict, _add_serve, _add_synth, _add_demo):
        add(sub)
    return parser


def train_overrides(args) -> list[str]:
    """Turn the convenience flags into ``key=value`` overrides; explicit overrides win."""
    flags = {"model.name": args.model, "data.train": args.data, "data.eval": args.eval_data,
             "model.method": args.method, "train.output": args.output, "train.max_steps": args.max_steps}
    return [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None] + args.overrides


def cmd_train(args) -> None:
    from doctune.config import load_config
    from doctune.train import train

    config = load_config(args.config, train_overrides(args))
    run_dir = train(config, resume=args.resume)
    print(f"run folder: {run_dir}")


def cmd_eval(args) -> None:
    from doctune.evaluate import evaluate_model

    metrics, _ = evaluate_model(args.model, args.data, Path(args.output), split=args.split, language=args.language,
                             batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                             max_samples=args.max_samples, skip_invalid=args.skip_invalid, precision=args.precision,
                             num_beams=args.num_beams)
    print(json.dumps(metrics, indent=2))


def cmd_score(args) -> None:
    from doctune.metrics import score_jsonl

    print(json.dumps(score_jsonl(args.predictions, args.per_sample), indent=2))


def cmd_predict(args) -> None:
    from doctune.images import load_page
    from doctune.inference import load_predictor

    image = load_page(args.image, page=args.page)  # fail on a bad file before loading any model
    predictor = load_predictor(args.model, args.max_new_tokens, args.precision, args.num_beams)
    answer = predictor.answer([image], [args.question])[0]
    if args.json:
        print(json.dumps({"question": args.question, "answer": answer, "image": args.image, "page": args.page}))
    else:
        print(answer)


def cmd_serve(args) -> None:
    import uvicorn

    from doctune.inference import load_predictor
    from doctune.serve import create_app

    app = create_app(load_predictor(args.model, args.max_new_tokens, args.precision, args.num_beams), args.model)
    uvicorn.run(app, host=args.host, port=args.port)


def cmd_synth(args) -> None:
    from doctune.synth import write_dataset

    path = write_dataset(Path(args.output), args.kinds, args.num_docs, args.seed, noise=args.noise,
                         workers=args.workers)
    print(f"wrote {path}")


def cmd_demo(args) -> None:
    from doctune.config import load_config
    from doctune.demo import DemoSettings, run_demo

    report = run_demo(Path(args.output), load_config(None, args.overrides, schema=DemoSettings))
    print(json.dumps(report, indent=2))


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "score": cmd_score, "predict": cmd_predict, "serve": cmd_serve,
            "synth": cmd_synth, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        # peft imports bitsandbytes, whose CPU backend warns on import that an optional faster 4-bit
        # kernel could not be fetched. It concerns only 4-bit models on the CPU; -v shows it.
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        COMMANDS[args.command](args)
    except DoctuneError as err:
        if args.verbose:
            raise
        print(f"doctune {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
