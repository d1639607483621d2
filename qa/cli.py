"""The ``qa`` command: ask, train, evaluate. ``main(argv)`` returns an exit code; user mistakes
print one line to stderr and exit non-zero, never a traceback."""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qa", description="Attention-based reading-comprehension QA.")
    commands = parser.add_subparsers(dest="command", required=True)

    ask = commands.add_parser("ask", help="answer a question about a passage")
    ask.add_argument("question")
    source = ask.add_mutually_exclusive_group()
    source.add_argument("--context", help="the passage text")
    source.add_argument("--file", help="read the passage from a file")
    ask.add_argument("--model", help="model folder (default: the shipped model)")
    ask.add_argument("--top-k", type=int, default=1)

    train = commands.add_parser("train", help="train a reader from a recipe in pipelines/")
    train.add_argument("--config", default="pipelines/default.json")
    train.add_argument("--run-dir", help="override the recipe's run folder")
    train.add_argument("--max-minutes", type=float, help="override the training time budget")
    train.add_argument("--seed", type=int, help="override the seed")

    evaluate = commands.add_parser("evaluate", help="official SQuAD v1.1 EM/F1 on a SQuAD-format file")
    evaluate.add_argument("data", help="SQuAD-format JSON file or hub dataset name")
    evaluate.add_argument("--split", default="validation", help="split of a hub dataset")
    evaluate.add_argument("--model", help="model folder (default: the shipped model)")
    evaluate.add_argument("--output", help="folder for predictions.json and metrics.json")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--limit", type=int, default=0, help="only the first N questions")
    evaluate.add_argument("--predictions", help="score this predictions file ({id: answer}) instead of running a model")
    evaluate.add_argument("--nbest", type=int, default=5, help="answers per question in nbest.json")
    return parser


def _read_passage(args) -> str:
    if args.context is not None:
        return args.context
    if args.file is not None:
        from pathlib import Path

        try:
            return Path(args.file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{args.file}: no such file") from None
        except UnicodeDecodeError:
            raise ValueError(f"{args.file}: not a UTF-8 text file") from None
        except OSError as error:
            raise ValueError(f"{args.file}: cannot read ({error.strerror})") from None
    if sys.stdin.isatty():
        raise ValueError("give the passage with --context, --file or on standard input")
    return sys.stdin.read()


def _ask(args) -> int:
    from rich.console import Console

    from qa.reader import Reader

    if not args.question.strip():
        raise ValueError("the question is empty")
    passage = _read_passage(args)
    if not passage.strip():
        raise ValueError("the passage is empty")
    reader = Reader.load(args.model)
    answers = reader.answer(args.question, passage, top_k=args.top_k)
    console = Console()
    for rank, answer in enumerate(answers, 1):
        console.print(f"{rank}. [bold green]{answer.text}[/] (score {answer.score:.3f}, characters {answer.start}-{answer.end})")
    return 0


def _train(args) -> int:
    from qa.train import TrainConfig, train

    overrides = {k: v for k, v in {"run_dir": args.run_dir, "max_minutes": args.max_minutes, "seed": args.seed}.items()
                 if v is not None}
    best = train(TrainConfig.from_file(args.config, overrides))
    print(f"best dev: EM {best.get('exact_match', 0):.2f} F1 {best.get('f1', 0):.2f} (epoch {best.get('epoch')})")
    return 0


def _evaluate(args) -> int:
    from qa.evaluation import run_evaluation

    run_evaluation(args.data, split=args.split, model=args.model, output=args.output, batch_size=args.batch_size,
                   limit=args.limit, predictions_file=args.predictions, nbest=args.nbest)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"ask": _ask, "train": _train, "evaluate": _evaluate}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"qa: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qa: interrupted", file=sys.stderr)
        return 130
