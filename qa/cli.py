"""The ``qa`` command: ask, chat, train, evaluate, calibrate. ``main(argv)`` returns an exit code;
user mistakes (``UserError``) print one line to stderr and exit 2, never a traceback; any other
exception is a bug and propagates with its traceback. ``console`` is the installed ``qa`` script."""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from rich.console import Console

from qa.errors import UserError
from qa.heat import DEFAULT_VIEW, LEVEL_RATIOS, VIEWS
from qa.inputs import MAX_PASSAGE_CHARS, checked_passage, is_blank
from qa.render import ATTENTION_CHOICES, TerminalConsole, export_html, render, result_dict

MODEL_HELP = "a shipped model, default or fast, or a model folder (default: default)"  # see qa.reader.model_folder
BFLOAT16_HELP = ("run the network and the contextual encoder under bfloat16 autocast (the default for a model with "
                 "a contextual encoder on CPUs with AVX512-BF16 or AMX, where it is faster at the same F1; on CPUs "
                 "without them it is slower)")
FLOAT32_HELP = "run in float32 even where bfloat16 is the default: bit-exact, reproducible results (also $QA_PRECISION)"
PATHS_HELP = ("documents to answer from: files (PDF, HTML, DOCX, Markdown, text in any common encoding) and "
              "folders, read recursively; the windows of all of them are ranked and read together, and each answer "
              "names its source. Unreadable files are skipped with a warning")
EXPLAIN_HELP = ("also show how the answer was found: the attention view's rule, the most attended spans, the tokens "
                "the answer drew on and, for a long passage, where the reader looked across it")
ABSTAIN_HELP = ("abstain where the model's no-answer probability is above P (default: the threshold the model "
                "records, fitted on held-out training articles)")

ATTENTION_HELP = (
    "which attention view shades the passage (default: the model's own, the view measured to point at the "
    f"answer's sentence most often; {DEFAULT_VIEW} for a model that names none): "
    + "; ".join(f"{name}: {rule}" for name, rule in VIEWS.items())
    + "; none: no attention. A token is shaded by its weight over the uniform weight, at four levels the model "
    "records per view (fitted on dev so that each marks the same share of tokens; "
    + ", ".join(f"{r:g}x" for r in LEVEL_RATIOS) + " for a model that records none); the legend shows them."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qa", description="Attention-based reading-comprehension QA.")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_ask, _add_chat, _add_index, _add_train, _add_calibrate, _add_evaluate):
        add(commands)
    return parser


def _add_reading(command: argparse.ArgumentParser) -> None:
    """The passage, document and model options ``ask`` and ``chat`` share."""
    command.add_argument("paths", nargs="*", metavar="PATH", help=PATHS_HELP)
    source = command.add_mutually_exclusive_group()
    source.add_argument("--context", help="the passage text")
    source.add_argument("--file", help="a document to read: the same as one PATH")
    source.add_argument("--index", metavar="DIR", help="answer from the documents indexed in DIR by qa index: each "
                        "question reads the windows of all of them that BM25 ranks best")
    command.add_argument("--model", help=MODEL_HELP)
    _add_precision(command)
    command.add_argument("--attention", choices=ATTENTION_CHOICES, help=ATTENTION_HELP)
    command.add_argument("--abstain-above", type=float, metavar="P", help=ABSTAIN_HELP)
    command.add_argument("--explain", action="store_true", help=EXPLAIN_HELP)


def _add_precision(command: argparse.ArgumentParser) -> None:
    """--bfloat16 and --float32; neither: bfloat16 where the CPU has its kernels, float32 elsewhere."""
    precision = command.add_mutually_exclusive_group()
    precision.add_argument("--bfloat16", dest="bfloat16", action="store_const", const=True, default=None, help=BFLOAT16_HELP)
    precision.add_argument("--float32", dest="bfloat16", action="store_const", const=False, help=FLOAT32_HELP)


def _add_ask(commands) -> None:
    ask = commands.add_parser("ask", help="answer a question from documents or a passage",
                              description="Answer QUESTION from the documents PATH... (files and folders), or from "
                                          "a passage given with --context or on standard input.")
    ask.add_argument("question")
    _add_reading(ask)
    ask.add_argument("--top-k", type=int, default=1, metavar="N", help="how many answers to show: the best and "
                     "N-1 alternatives (default 1)")
    ask.add_argument("--force", action="store_true",
                     help="answer even when the model judges that the passage does not answer the question")
    ask.add_argument("--json", action="store_true", help="print a JSON result instead of the rendering")
    ask.add_argument("--html", metavar="FILE", help="also write the rendering, with its colours, as an HTML page")


def _add_chat(commands) -> None:
    chat = commands.add_parser("chat", help="ask question after question about documents or a passage")
    _add_reading(chat)
    chat.add_argument("--force", action="store_true", help="always answer (also :force in the chat)")


def _add_index(commands) -> None:
    index = commands.add_parser("index", help="index documents on disk, to ask them again and again",
                                description="Store the documents of PATH... (files and folders), their windows and "
                                            "a BM25 index in DIR; run again with the same PATHs to update only what was "
                                            "added, changed or removed. DIR holds exactly the documents under the PATHs "
                                            "given last: documents indexed from other paths before are removed. Then: "
                                            "qa ask QUESTION --index DIR.")
    index.add_argument("paths", nargs="+", metavar="PATH", help="files and folders (read recursively)")
    index.add_argument("--output", required=True, metavar="DIR", help="the index folder (made if missing)")


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train", help="train a reader from a recipe in pipelines/, or fine-tune one on your own data",
        description="Train from a recipe (--config), or fine-tune a model on your own SQuAD v1.1 or v2.0 file: "
                    "qa train --from default --train FILE --output DIR. Fine-tuning writes the model folder DIR "
                    "(use it with --model DIR), its checkpoints and held-out split in DIR/run (run the same "
                    "command again to resume), and DIR/fine-tune.json, the held-out scores before and after; "
                    "it takes --max-minutes (default 8), --max-steps, --seed and --device, not --config, "
                    "--run-dir or --prepare-workers, which only recipe training takes.")
    train.add_argument("--config", help="a training recipe (default: pipelines/default.json)")
    fine = train.add_argument_group("fine-tuning")
    fine.add_argument("--from", dest="from_model", metavar="MODEL", help="fine-tune this model: a shipped one "
                      "(default, fast) or a model folder")
    fine.add_argument("--train", dest="train_file", metavar="FILE", help="your SQuAD-format file (v1.1 or v2.0)")
    fine.add_argument("--dev", dest="dev_file", metavar="FILE", help="questions to choose the checkpoint and fit the "
                      "no-answer threshold on (default: 15%% of --train's articles, held out)")
    fine.add_argument("--output", metavar="DIR", help="the new model folder")
    fine.add_argument("--squad-dev", metavar="FILE", help="also report SQuAD v1.1 dev F1 before and after (forgetting)")
    fine.add_argument("--rehearse", metavar="FILE", help="also train on as many questions of this SQuAD-format file "
                      "(SQuAD v1.1 train, say) as yours, drawn by paragraph: it holds off forgetting, so the anchor "
                      "can be weaker (default weight 0.1 with it) and the model learns more of your domain")
    fine.add_argument("--anchor-weight", type=float, metavar="W", help="how strongly the weights are kept near the "
                      "starting model's (default 0.5, which kept SQuAD dev about 1 F1 below default's; 0 learns your "
                      "domain most and forgets most)")
    train.add_argument("--run-dir", help="override the recipe's run folder")
    train.add_argument("--max-minutes", type=float, help="override the training time budget (0: none; "
                       "fine-tuning's default is 8)")
    train.add_argument("--max-steps", type=int, help="override the step budget (0: none); unlike minutes it does not "
                       "depend on the machine's load, so a second seed can read as many batches as the first")
    train.add_argument("--seed", type=int, help="override the seed")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the device (auto: CUDA if present)")
    train.add_argument("--prepare-workers", type=int, help="processes for tokenizing the data (recipe training "
                       "only)")


def _add_calibrate(commands) -> None:
    calibrate = commands.add_parser("calibrate", help="fit a model's score temperature and no-answer threshold on "
                                    "questions it was not trained on")
    calibrate.add_argument("data", help="SQuAD-format JSON file or hub dataset name")
    calibrate.add_argument("--split", default="validation", help="split of a hub dataset")
    calibrate.add_argument("--model", help=MODEL_HELP)
    calibrate.add_argument("--limit", type=int, default=0, help="only the first N questions")
    calibrate.add_argument("--output", metavar="DIR", help="write the calibrated model here (a copy of --model's folder); "
                           "without it the model's own folder is calibrated, which must not be a shipped model")
    calibrate.add_argument("--max-refused", type=float, default=0.05, metavar="SHARE",
                           help="the trade-off of the no-answer threshold: refuse at most this share of "
                                "answerable questions like the file's (default 0.05)")
    calibrate.add_argument("--confidence", type=float, default=0.9, metavar="P",
                           help="how sure the fit must be that --max-refused holds on new questions, from the "
                                "file's answerable questions (a one-sided Clopper-Pearson bound; default 0.9)")


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="official SQuAD EM/F1 (and the v2.0 figures on SQuAD 2.0 files)")
    evaluate.add_argument("data", help="SQuAD-format JSON file or hub dataset name")
    evaluate.add_argument("--split", default="validation", help="split of a hub dataset")
    evaluate.add_argument("--model", help=MODEL_HELP)
    evaluate.add_argument("--output", help="folder for predictions.json and metrics.json, nbest.json (with a model) "
                                           "and na_prob.json (on SQuAD 2.0 files, and on any file for a model with "
                                           "the no-answer option); an earlier run's files of another set are removed")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--limit", type=int, default=0, help="only the first N questions")
    evaluate.add_argument("--predictions", help="score this predictions file ({id: answer}) instead of running a model")
    evaluate.add_argument("--nbest", type=int, default=5, help="answers per question in nbest.json")
    _add_precision(evaluate)
    evaluate.add_argument("--lenient", action="store_true",
                          help="skip malformed records (counted and reported) instead of stopping at the first")
    evaluate.add_argument("--max-windows", type=int, metavar="N",
                          help="read at most N windows of 200 tokens of a long passage, those BM25 ranks best for "
                               "the question (default 4; 0: all)")
    evaluate.add_argument("--first-windows", type=int, metavar="N",
                          help="read the N best of them first, and the others only for a question whose best answer "
                               "there scores below the reader's confident score (default 2; 0: all at once)")
    evaluate.add_argument("--abstain-above", type=float, metavar="P", help=ABSTAIN_HELP + " (on files with "
                          "unanswerable questions; metrics.json reports the answerable questions refused at it on every file)")
    evaluate.add_argument("--attention", choices=ATTENTION_CHOICES,
                          help="attention view whose answer-sentence hit rate goes in metrics.json (default: the "
                               "model's own; none: skip; not measured with --collection)")
    opened = evaluate.add_mutually_exclusive_group()
    opened.add_argument("--collection", dest="open_setting", action="store_const", const="collection",
                        help="the open setting: ask every question against all the file's articles as one collection "
                             "(an article: its paragraphs joined by blank lines); nbest.json cites each answer's article")
    opened.add_argument("--without-own", dest="open_setting", action="store_const", const="without own",
                        help="ask every question against all the file's articles but its own, where the right "
                             "outcome is to abstain; metrics.json reports how often it does")


def _read_passage(args) -> str:
    if args.context is not None:
        return checked_passage(args.context)
    if sys.stdin is None or sys.stdin.isatty():  # None: standard input closed
        raise UserError("give documents as PATH..., or the passage with --context or on standard input")
    try:
        text = sys.stdin.read(MAX_PASSAGE_CHARS + 1)  # no more is read: memory stays bounded
        if len(text) > MAX_PASSAGE_CHARS:
            raise UserError(f"the passage on standard input has over {MAX_PASSAGE_CHARS:,} characters; the limit is "
                            f"{MAX_PASSAGE_CHARS:,}")
        return checked_passage(text)
    except UnicodeDecodeError:
        raise UserError("standard input is not UTF-8 text") from None


def _ask(args) -> int:
    """Answer one question about a passage, files or an index; print it (or JSON) and write the HTML asked for."""
    if is_blank(args.question):
        raise UserError("the question is empty")
    if args.top_k < 1:
        raise UserError("--top-k must be at least 1")
    context = _context(args)  # input errors are reported before the slow import below
    if args.html:
        context.refuse_overwriting(args.html)
    from qa.reader import Reader

    reader = Reader.load(args.model, bfloat16=args.bfloat16, abstain_above=args.abstain_above)
    view = args.attention or reader.attention_view
    text, prediction = context.predict(reader, args.question, top_k=args.top_k, with_attention=view != "none",
                                       attention_view=view, force=args.force)
    console = TerminalConsole()
    if args.json:
        utf8 = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "") == "utf8"
        print(json.dumps({**result_dict(args.question, text, prediction, view), "precision": reader.precision,
                          **context.summary()}, ensure_ascii=not utf8))  # \u escapes keep it JSON in any encoding
    else:
        render(console, args.question, text, prediction, args.explain, context.documents)
    if args.html:  # after the answer is printed, so a path that cannot be written loses nothing
        export_html(args.html, args.question, text, prediction, console.width, args.explain, context.documents)
    return 0


def _context(args):
    """What ``ask`` and ``chat`` read: the documents of PATH... and --file, else the passage of --context or stdin;
    each file skipped is warned of on stderr, with a count."""
    from qa.context import Context

    paths = [*args.paths, *([args.file] if args.file is not None else [])]
    if paths and (args.context is not None or args.index is not None):
        raise UserError("give documents as PATH..., an index with --index or a passage with --context, not two of them")
    if args.index is not None:
        return Context.of_index(args.index)
    if not paths:
        return Context.of_passage(_read_passage(args))
    context = Context.of_paths(paths)
    for warning in context.warnings():
        print(f"qa: warning: {warning}", file=sys.stderr)
    if context.skipped:
        print(f"qa: {context.described()}", file=sys.stderr)
    return context


def _chat(args) -> int:
    from qa.chat import Chat

    context = None
    if args.context is not None or args.file is not None or args.paths or args.index is not None:
        context = _context(args)
    return Chat(args.model, context, args.attention, args.force, args.bfloat16, args.abstain_above, args.explain).run()


def _index(args) -> int:
    """Build or update the index with a progress bar, then say what changed, warn of the files skipped and
    give the index's size."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from qa.documents import skip_warnings
    from qa.index import build_index, check_paths

    check_paths(args.paths)  # before the progress bar, which would leave a blank line above the message
    tic = time.monotonic()
    console = Console(stderr=True)
    with Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("index", total=None)
        update = build_index(args.paths, args.output, lambda done, total: progress.update(task, completed=done,
                                                                                          total=total))
    for warning in skip_warnings(update.skipped):
        print(f"qa: warning: {warning}", file=sys.stderr)
    print(f"{args.output}: {update.documents:,} documents, {update.windows:,} windows, "
          f"{update.bytes / 1e6:.1f} MB; {update.added:,} added, {update.changed:,} changed, "
          f"{update.removed:,} removed, {update.unchanged:,} unchanged, {len(update.skipped):,} skipped "
          f"({time.monotonic() - tic:.1f} s)")
    return 0


def _fine_tune(args) -> int:
    from qa.fine_tune import fine_tune

    if args.config or args.run_dir or args.prepare_workers is not None or not (args.train_file and args.output):
        raise UserError("fine-tuning takes --from MODEL --train FILE --output DIR (and not --config, --run-dir "
                        "or --prepare-workers)")
    report = fine_tune(args.from_model, args.train_file, args.output, dev=args.dev_file, squad_dev=args.squad_dev,
                       seed=13 if args.seed is None else args.seed, max_minutes=args.max_minutes,
                       max_steps=args.max_steps, anchor_weight=args.anchor_weight, device=args.device,
                       rehearse=args.rehearse)
    for moment in ("before", "after"):
        scores = report[moment]
        line = f"{moment}: held-out F1 with answers forced (answerable questions) {scores['forced_f1_answerable']:.2f}"
        if "f1" in scores:
            line += f"; v2.0 F1 {scores['f1']:.2f} (HasAns {scores['HasAns_f1']:.2f}, NoAns {scores['NoAns_f1']:.2f})"
        print(line)
    if "squad_dev_f1" in report:
        print("SQuAD v1.1 dev F1 (forgetting): {before:.2f} before, {after:.2f} after".format(**report["squad_dev_f1"]))
    print(f"wrote the fine-tuned model to {args.output} (report: {args.output}/fine-tune.json)")
    return 0


def _train(args) -> int:
    from qa.train import TrainConfig, train

    if args.from_model:
        return _fine_tune(args)
    if (args.train_file or args.output or args.dev_file or args.squad_dev or args.rehearse
            or args.anchor_weight is not None):
        raise UserError("--train, --dev, --output, --squad-dev, --rehearse and --anchor-weight fine-tune a model: "
                        "add --from MODEL")

    overrides = {k: v for k, v in {"run_dir": args.run_dir, "max_minutes": args.max_minutes,
                                   "max_steps": args.max_steps, "seed": args.seed,
                                   "device": args.device, "prepare_workers": args.prepare_workers}.items()
                 if v is not None}
    best = train(TrainConfig.from_file(args.config or "pipelines/default.json", overrides)).best
    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun only rank 0 reports
        return 0
    print(f"best dev: EM {best.get('exact_match', 0):.2f} F1 {best.get('f1', 0):.2f} (epoch {best.get('epoch')})")
    return 0


def _evaluate(args) -> int:
    from qa.evaluation import run_evaluation

    run_evaluation(args.data, split=args.split, model=args.model, output=args.output, batch_size=args.batch_size,
                   limit=args.limit, predictions_file=args.predictions, nbest=args.nbest, lenient=args.lenient,
                   bfloat16=args.bfloat16, attention_view=args.attention,
                   max_windows=args.max_windows, first_windows=args.first_windows, abstain_above=args.abstain_above,
                   open_setting=args.open_setting)
    return 0


def _calibrate(args) -> int:
    from qa.calibration import calibrate

    calibrate(args.data, model=args.model, split=args.split, limit=args.limit, output=args.output,
              max_refused=args.max_refused, confidence=args.confidence)
    return 0


def _parsed(argv: list[str] | None) -> argparse.Namespace:
    """The command line's arguments. ``ask`` and ``chat`` also take PATHs after their options (``qa ask Q
    --top-k 2 doc.txt``), which argparse leaves over once the PATH positional has matched nothing before them."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    separated = extra[:1] == ["--"]  # after "--" a PATH may begin with "-"
    extra = extra[1:] if separated else extra
    if extra and args.command in ("ask", "chat") and (separated or not any(value.startswith("-") for value in extra)):
        args.paths = [*args.paths, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parsed(argv)
    handlers = {"ask": _ask, "chat": _chat, "index": _index, "train": _train, "evaluate": _evaluate,
                "calibrate": _calibrate}
    try:
        return handlers[args.command](args)
    except UserError as error:
        print(f"qa: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # training diverged; the last good checkpoint is kept
        print(f"qa: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        print(f"qa: {str(interrupt) or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # whoever read the output stopped (qa ask ... | head): end quietly, as head's peers do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush cannot fail again
        return 141
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):  # not writing the output: a bug, shown whole
            raise
        print(f"qa: error: cannot write the output ({error.strerror})", file=sys.stderr)  # a full disk under > FILE
        return 1


QUICK_EXIT = frozenset({"ask", "chat"})  # commands whose process has nothing left to do after its output


def console() -> None:
    """The ``qa`` script and ``python -m qa``: ``main``, then exit with its code. ``ask`` and ``chat`` skip
    the interpreter's teardown once their output is flushed (about 0.9 s of freeing the vocabulary,
    spaCy and the model on a 2-core machine, measured launch to exit); every file they write is closed
    by then."""
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show a character gets an escape, not a crash
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    code = main()
    if sys.argv[1:2] and sys.argv[1] in QUICK_EXIT:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:  # None: the stream was closed before qa started
                    stream.flush()
            except BrokenPipeError:  # the buffered output met a reader that had stopped, as in main
                code = 141
            except OSError:
                code = code or 1
        os._exit(code)
    sys.exit(code)
