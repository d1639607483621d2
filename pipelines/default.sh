#!/usr/bin/env bash
# The recipe of the shipped default model: train, evaluate on the full dev set, export into qa/model.
# Run from the repository root with the SQuAD v1.1 files in ../shared/data/squad-v1.1/.
# Optional first argument: training budget in minutes (the recipe's own budget is 150).
set -euo pipefail
MINUTES="${1:-150}"
qa train --config pipelines/default.json --max-minutes "$MINUTES"
qa evaluate ../shared/data/squad-v1.1/dev.json --model runs/default/best --output runs/default/dev-eval
python scripts/export_model.py runs/default/best --metrics runs/default/dev-eval/metrics.json
