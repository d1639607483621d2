"""Copy a trained model folder (e.g. ``runs/default/best``) into the package as the shipped model.

Usage: python scripts/export_model.py RUN/best [--name default|fast] [--metrics RUN/dev-eval/metrics.json]

Writes ``qa/models/NAME/model.safetensors`` and ``qa/models/NAME/config.json`` (model settings, with
its calibration, plus the dev metrics measured by ``qa evaluate`` when given), after checking the
weights load.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.checkpoint import CONFIG_FILE, DIGEST_KEY, MODEL_FILE, read_json, read_tensors, write_json, write_tensors  # noqa: E402
from qa.reader import MODEL_NAMES, Reader, model_folder  # noqa: E402
from qa.errors import run_script  # noqa: E402
from qa.inputs import read_json_object  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="trained model folder")
    parser.add_argument("--name", choices=MODEL_NAMES, default="default", help="which shipped model it becomes")
    parser.add_argument("--metrics", help="metrics.json written by qa evaluate on the dev set")
    args = parser.parse_args()
    source, target = Path(args.source), model_folder(args.name)
    Reader.load(source)  # refuses a folder whose weights do not match its config
    config = read_json(source / CONFIG_FILE)
    if args.metrics:
        config["dev"] = read_json_object(args.metrics)
    target.mkdir(parents=True, exist_ok=True)
    config[DIGEST_KEY] = write_tensors(target / MODEL_FILE, read_tensors(source / MODEL_FILE))
    write_json(target / CONFIG_FILE, config)
    size = (target / MODEL_FILE).stat().st_size / 1e6
    print(f"exported {source} -> {target} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    run_script(main)
