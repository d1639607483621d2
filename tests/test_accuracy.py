"""The shipped models' accuracy, pinned on a committed sample of 300 SQuAD v1.1 dev questions
(``tests/data/README.md``). The floors are each model's figures on the sample less 2 points;
whoever ships a new model raises them."""
from pathlib import Path

import pytest
from rich.console import Console

from qa.evaluation import run_evaluation

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).parent / "data" / "squad-v1.1-dev-sample.json"
# each shipped model's figures, measured with `qa evaluate tests/data/squad-v1.1-dev-sample.json --model NAME`
SHIPPED = {"default": {"exact_match": 72.00, "f1": 79.67},
           "fast": {"exact_match": 64.67, "f1": 74.03}}


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_each_shipped_model_keeps_its_accuracy_on_the_dev_sample(model):
    metrics = run_evaluation(str(SAMPLE), model=model, console=Console(quiet=True))
    assert metrics["questions"] == 300
    assert metrics["exact_match"] >= SHIPPED[model]["exact_match"] - 2
    assert metrics["f1"] >= SHIPPED[model]["f1"] - 2
