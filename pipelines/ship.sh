#!/usr/bin/env bash
# Make a shipped model end to end: train its recipe, evaluate on the full SQuAD v1.1 dev set, fit the
# score temperature and the no-answer threshold on held-out training articles, choose the attention view
# shown by default (the one that points at the answer's sentence most often on dev), export into qa/models/NAME.
#   bash pipelines/ship.sh default        # pipelines/default.json (MiniLM features + GloVe, no-answer option)
#   bash pipelines/ship.sh fast 150       # pipelines/fast.json (GloVe alone); optional budget in minutes
# Without a budget the recipe's own applies (default.json: 20,560 steps; fast.json: 150 minutes).
# Run from the repository root with the SQuAD v1.1 files in ../shared/data/squad-v1.1/.
set -euo pipefail
NAME="${1:?which model: default or fast}"
BUDGET=()
[ -n "${2:-}" ] && BUDGET=(--max-minutes "$2")
RUN="runs/$NAME"
TRAIN=../shared/data/squad-v1.1/train.json
HELD_OUT_ARTICLES=$(python -c "import json; print(json.load(open('pipelines/$NAME.json'))['training'].get('held_out_articles', 0))")
qa train --config "pipelines/$NAME.json" "${BUDGET[@]}"
qa evaluate ../shared/data/squad-v1.1/dev.json --model "$RUN/best" --output "$RUN/dev-eval"
if [ "$HELD_OUT_ARTICLES" -gt 0 ]; then  # the recipe kept these articles out of training: calibrate on them
  python scripts/held_out_negatives.py "$TRAIN" "$RUN/held-out.json" --articles "$HELD_OUT_ARTICLES"
  qa calibrate "$RUN/held-out.json" --model "$RUN/best"
fi
python scripts/attention_views.py --model "$RUN/best" --record  # the view its display shows by default, and each view's heat levels
python scripts/export_model.py "$RUN/best" --name "$NAME" --metrics "$RUN/dev-eval/metrics.json"
