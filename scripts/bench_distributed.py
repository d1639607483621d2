"""Training throughput with 1 and with N data-parallel processes, measured side by side in one run.

    python scripts/bench_distributed.py                  # 1 vs 2 processes, 300 steps each
    python scripts/bench_distributed.py --steps 100 --processes 1 2 4

Each setting trains the `fast` recipe (``pipelines/fast.json``) for the same number of global batches of SQuAD train
(one process uses every core's threads; under torchrun each of N processes gets 1 thread)
and reports training questions per second from the run log (dev evaluation excluded).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qa.errors import run_script
from qa.train import read_log
from qa.inputs import read_json_object


def throughput(recipe: dict, processes: int, steps: int, folder: Path) -> float:
    """Training questions per second of one run with ``processes`` ranks."""
    run = folder / f"run-{processes}"
    recipe = json.loads(json.dumps(recipe))
    recipe["training"].update({"run_dir": str(run), "max_steps": steps, "max_minutes": 0, "limit_dev": 200,
                               "device": "cpu"})
    path = folder / f"recipe-{processes}.json"
    path.write_text(json.dumps(recipe))
    launch = [sys.executable, "-m", "qa"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "qa"]
    subprocess.run(launch + ["train", "--config", str(path)], check=True, stdout=subprocess.DEVNULL)
    return [x for x in read_log(run) if x["event"] == "epoch"][-1]["train_examples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="pipelines/fast.json")
    parser.add_argument("--steps", type=int, default=300, help="global batches per setting")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    recipe = read_json_object(args.recipe)
    table = Table(title=f"training throughput ({args.steps} global batches of {recipe['training']['batch_size']})")
    for column in ("processes", "train questions/s", "vs 1 process"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as folder:
        speeds = {n: throughput(recipe, n, args.steps, Path(folder)) for n in args.processes}
    for n, speed in speeds.items():
        ratio = f"{speed / speeds[1]:.2f}x" if 1 in speeds else ""
        table.add_row(str(n), f"{speed:.1f}", ratio)
    Console().print(table)


if __name__ == "__main__":
    run_script(main)
