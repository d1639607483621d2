"""Attention ablation: train variants of a recipe (default: the `fast` one, ``pipelines/fast.json``) that
differ only in attention, each for the same number of optimizer steps, and tabulate dev EM/F1, training
speed and size. The ``default`` row is the recipe itself, described by its own settings; a variant that
the recipe already has (its own score, say) is the default row again, so it is skipped.

    python scripts/ablation.py                      # all rows (about 10 minutes each on 2 cores)
    python scripts/ablation.py --only dot cosine    # some rows
    python scripts/ablation.py --steps 200 --limit-dev 500 --out runs/ablation-smoke

Each row trains in its own process into ``<out>/<row>/`` and is skipped when already finished,
so an interrupted ablation resumes where it stopped. The results go to ``<out>/results.json``
and, with ``--doc``, replace the table between the markers in ``docs/attention-ablation.md``
(the prose around it is kept) and ``docs/attention-ablation.json`` (read by the notebook).
A step budget, not a time budget, keeps the rows comparable when the machine is busy;
the examples/s column shows what each choice costs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qa.errors import run_script
from qa.train import LOG_FILE, read_log
from qa.inputs import read_json_object
from qa.model import ReaderConfig

# (row name, what differs from the recipe, model settings that differ, training settings that differ)
VARIANTS = [
    ("default", "the recipe as it is", {}, {}),  # described by its settings (``described``)
    ("default-seed-2", "the default with another seed: the noise level of this table", {}, {"seed": 2}),
    ("bilinear", "score: bilinear", {"score": "bilinear"}, {}),
    ("dot", "score: dot product", {"score": "dot"}, {}),
    ("scaled-dot", "score: scaled dot product", {"score": "scaled_dot"}, {}),
    ("additive", "score: additive (Bahdanau)", {"score": "additive"}, {}),
    ("cosine", "score: cosine", {"score": "cosine"}, {}),
    ("gate", "gate on", {"gate": True}, {}),
    ("no-gate", "gate off", {"gate": False}, {}),
    ("hard", "hard general attention (straight-through Gumbel-softmax)", {"hard_attention": True}, {}),
    ("passage-self-off", "passage self-attention off", {"passage_self_attention": "off"}, {}),
    ("passage-self-local", "passage self-attention: local window (15 each side)", {"passage_self_attention": "local"}, {}),
    ("passage-self-multihead", "passage self-attention: 4 heads", {"passage_self_attention": "multihead"}, {}),
    ("question-self-off", "question self-attention off (mean-pooled question)", {"question_self_attention": False}, {}),
]
START, END = "<!-- ablation table: written by scripts/ablation.py -->", "<!-- end of ablation table -->"


def described(model: dict) -> str:
    """A recipe's attention settings in words: what its ``default`` row measures."""
    config = ReaderConfig.from_dict(model)
    return (f"{config.score} score, gate {'on' if config.gate else 'off'}, {config.passage_self_attention} passage "
            f"self-attention, question self-attention {'on' if config.question_self_attention else 'off'}")


def rows_to_run(base_model: dict) -> list[tuple[str, str, dict, dict]]:
    """The variants that change ``base_model`` (or its training), the ``default`` row described by its settings."""
    config = ReaderConfig.from_dict(base_model)
    rows = []
    for name, description, model, training in VARIANTS:
        if name == "default":
            rows.append((name, described(base_model), model, training))
        elif training or any(getattr(config, key) != value for key, value in model.items()):
            rows.append((name, description, model, training))
    return rows


def row_recipe(base: dict, out: Path, name: str, model: dict, training: dict, args) -> Path:
    """Write the recipe of one row: the base recipe with its settings replaced."""
    recipe = json.loads(json.dumps(base))
    recipe["model"].update(model)
    recipe["training"].update({"run_dir": str(out / name), "max_steps": args.steps, "max_minutes": 0,
                               "epochs": 1000, **training})
    if args.limit_dev:
        recipe["training"]["limit_dev"] = args.limit_dev
    path = out / f"{name}.json"
    path.write_text(json.dumps(recipe, indent=2))
    return path


def finished(run: Path) -> dict | None:
    """The row's result once its budget is spent, else None."""
    if not (run / LOG_FILE).exists():
        return None
    lines = read_log(run)
    epochs = [x for x in lines if x["event"] == "epoch"]
    if not epochs or epochs[-1]["complete"]:
        return None
    start = next(x for x in lines if x["event"] == "start")
    last = epochs[-1]
    seen = sum(x["steps"] for x in epochs if x["complete"]) + last["steps"]
    minutes = last["minutes"] - sum(x["dev_eval_s"] for x in epochs) / 60
    return {"exact_match": round(last["exact_match"], 2), "f1": round(last["f1"], 2),
            "examples_per_s": round(seen * start["config"]["training"]["batch_size"] / (minutes * 60), 1),
            "parameters": start["parameters"], "train_minutes": round(minutes, 1)}


def markdown(rows: list[dict], steps: int, batch_size: int) -> str:
    lines = [START, "",
             f"Every row: {steps:,} steps of {batch_size} questions ({steps * batch_size:,} training questions), "
             "then the official metric on the dev questions.", "",
             "| row | what differs | dev EM | dev F1 | ΔF1 vs default | train ex/s | parameters |",
             "|---|---|---:|---:|---:|---:|---:|"]
    base = next((r["f1"] for r in rows if r["row"] == "default"), None)
    for r in rows:
        delta = f"{r['f1'] - base:+.2f}" if base is not None else ""
        lines.append(f"| {r['row']} | {r['description']} | {r['exact_match']:.2f} | {r['f1']:.2f} | {delta} | "
                     f"{r['examples_per_s']:.1f} | {r['parameters']:,} |")
    return "\n".join(lines + ["", END])


def write_doc(doc: Path, table: str) -> None:
    """Replace the table between the markers, keeping the prose around it."""
    text = doc.read_text() if doc.exists() else f"# Attention ablation\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{doc}: the table markers are missing")
    head, rest = text.split(START, 1)
    doc.write_text(head + table + rest.split(END, 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="pipelines/fast.json")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps per row")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--only", nargs="*", help="row names to run")
    parser.add_argument("--limit-dev", type=int, default=0, help="evaluate on the first N dev questions only")
    parser.add_argument("--doc", action="store_true", help="update docs/attention-ablation.md and .json")
    args = parser.parse_args()
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = read_json_object(args.recipe)
    names = [v[0] for v in VARIANTS]
    unknown = set(args.only or []) - set(names)
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))} (rows: {', '.join(names)})")
    own = set(args.only or []) - {name for name, *_ in rows_to_run(base["model"])}
    if own:
        raise SystemExit(f"{', '.join(sorted(own))}: the recipe's own setting, measured by the default row")

    rows = []
    for name, description, model, training in rows_to_run(base["model"]):
        if args.only and name not in args.only:
            continue
        run = out / name
        if finished(run) is None:
            recipe = row_recipe(base, out, name, model, training, args)
            console.print(f"[bold]{name}[/]: {description}")
            with open(out / f"{name}.out", "a") as output:
                code = subprocess.call([sys.executable, "-m", "qa", "train", "--config", str(recipe)],
                                       stdout=output, stderr=subprocess.STDOUT)
            if code != 0:
                raise SystemExit(f"{name}: training failed (exit {code}); see {out / f'{name}.out'}")
        rows.append({"row": name, "description": description, **finished(run)})

    table = Table(title=f"attention ablation ({args.steps:,} steps per row)")
    for column in ("row", "EM", "F1", "ex/s", "parameters"):
        table.add_column(column, justify="left" if column == "row" else "right")
    for r in rows:
        table.add_row(r["row"], f"{r['exact_match']:.2f}", f"{r['f1']:.2f}", f"{r['examples_per_s']:.1f}",
                      f"{r['parameters']:,}")
    console.print(table)
    result = {"steps": args.steps, "batch_size": base["training"]["batch_size"], "limit_dev": args.limit_dev,
              "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    if args.doc:
        write_doc(Path("docs/attention-ablation.md"), markdown(rows, args.steps, result["batch_size"]))
        Path("docs/attention-ablation.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    run_script(main)
