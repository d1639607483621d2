"""Index SQuAD articles as files and time questions against the index, as ``qa index`` and ``qa ask --index`` do.

Each article of the given SQuAD files is written as one text file (its paragraphs joined by blank lines,
named by its title) into ``--work``; ``qa.index.build_index`` indexes that folder from scratch (an
index left in ``--work`` by an earlier run is removed first, so the time is a whole build's; timed,
size reported); then ``--questions`` questions of the first file, spread over it, are asked one at a time
through ``Reader.predict_index`` (the path of ``qa ask --index``), after ``--warm-up`` unmeasured ones.
Prints one JSON object: index minutes and MB, the retrieval p50 and the whole question's p50/p90 in ms,
F1 of the questions asked (answers forced), and the peak RSS of this whole process (``peak_rss_mb``:
the articles written, the index built and the questions asked, an upper bound on one question's).

    python scripts/bench_index.py ../shared/data/squad-v1.1/dev.json --work /tmp/bench-index
    python scripts/bench_index.py ../shared/data/squad-v1.1/dev.json ../shared/data/squad-v1.1/train.json --work /tmp/bi2
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from qa.errors import run_script
from qa.inputs import read_json_object


def write_articles(files: list[str], folder: Path) -> int:
    """Each article of ``files`` as ``folder/<file stem>/<title>.txt``; returns how many."""
    count = 0
    for file in files:
        part = folder / Path(file).stem
        part.mkdir(parents=True, exist_ok=True)
        for article in read_json_object(file)["data"]:
            name = re.sub(r"[^\w.-]+", "_", article["title"])[:100] + ".txt"
            (part / name).write_text("\n\n".join(p["context"] for p in article["paragraphs"]))
            count += 1
    return count


def questions_of(file: str, count: int) -> list[tuple[str, str, dict]]:
    """``count`` (id, question, answers) spread evenly over ``file``."""
    from qa.data import load_squad

    records = load_squad(file)
    step = max(len(records) // count, 1)
    chosen = records.select(range(0, len(records), step)).select(range(min(count, (len(records) + step - 1) // step)))
    return list(zip(chosen["id"], chosen["question"], chosen["answers"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="SQuAD-format JSON files; questions come from the first")
    parser.add_argument("--work", required=True, help="folder for the article files and the index")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--warm-up", type=int, default=5)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()

    from qa.index import Index, build_index
    from qa.metric import squad_scores
    from qa.reader import Reader

    work = Path(args.work)
    articles = write_articles(args.files, work / "articles")
    shutil.rmtree(work / "index", ignore_errors=True)  # an update of an earlier run's index would time nothing
    tic = time.monotonic()
    update = build_index([work / "articles"], work / "index")
    if update.added != update.documents:
        raise SystemExit(f"{work / 'index'}: {update.added} of {update.documents} documents built; not a whole build")
    index_minutes = (time.monotonic() - tic) / 60
    reader = Reader.load(args.model)
    asked = questions_of(args.files[0], args.questions + args.warm_up)
    searches, totals, predictions = [], [], {}
    with Index.open(work / "index") as index:
        for n, (qid, question, _) in enumerate(asked):
            tic = time.perf_counter()
            index.search(question, 4)
            searched = time.perf_counter()
            [(_, prediction)] = reader.predict_index([question], index, force=True)
            done = time.perf_counter()
            if n >= args.warm_up:
                searches.append(1000 * (searched - tic))
                totals.append(1000 * (done - searched))
                predictions[qid] = prediction.text
    scored = squad_scores(predictions, [{"id": i, "answers": a} for i, _, a in asked[args.warm_up:]])
    print(json.dumps({
        "articles": articles, "documents": update.documents, "windows": update.windows,
        "index_minutes": round(index_minutes, 2), "index_mb": round(update.bytes / 1e6, 1),
        "model": args.model, "precision": reader.precision, "questions": len(totals),
        "search_ms_p50": round(float(np.percentile(searches, 50)), 1),
        "question_ms_p50": round(float(np.percentile(totals, 50)), 1),
        "question_ms_p90": round(float(np.percentile(totals, 90)), 1),
        "f1_forced": round(scored["f1"], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    run_script(main)
