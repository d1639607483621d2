"""The training budget (``qa.train.Budget``): the schedule's progress, the stop decision and what a
checkpoint keeps of it; the ranks' agreement on it is exercised by tests/test_distributed.py."""
import time

import pytest

from qa.distributed import World
from qa.train import Budget, TrainConfig, TrainState


def test_share_follows_whichever_budget_runs_out_first():
    assert Budget(epochs=4).share(1.5, minutes=0.0) == pytest.approx(1.5 / 4)
    assert Budget(epochs=30, max_minutes=120).share(1.0, minutes=90.0) == pytest.approx(0.75)
    assert Budget(epochs=30, max_minutes=120, max_steps=1000, steps=900).share(0.0, minutes=6.0) == pytest.approx(0.9)
    assert Budget(epochs=30, max_minutes=120).share(0.0, minutes=500.0) == 1.0  # overrun clamps


def test_agreement_sets_progress_and_time_up_and_sums_the_named_extras():
    budget = Budget(epochs=2, max_minutes=60.0, started=time.monotonic() - 30 * 60)  # half the minutes spent
    agreed = budget.agree(World(), 0.5, loss=2.5, interrupted=0.0)
    assert agreed == {"loss": 2.5, "interrupted": 0.0}
    assert budget.progress == pytest.approx(0.5, abs=1e-3) and not budget.time_up and not budget.spent
    budget.started -= 31 * 60  # the clock passes max_minutes: spent only once the ranks agree so
    assert not budget.spent
    budget.agree(World(), 0.5)
    assert budget.time_up and budget.spent and budget.progress == 1.0 and not budget.allows(0)


def test_steps_and_epochs_bound_the_run():
    budget = Budget(epochs=3, max_steps=2, steps=1)
    assert not budget.spent and budget.allows(2) and not budget.allows(3)
    budget.steps += 1
    assert budget.spent and not budget.allows(0)
    assert not Budget(epochs=3, steps=10**6).spent  # no step limit


def test_a_checkpoint_position_round_trips_the_state_and_the_budget():
    config = TrainConfig(epochs=5, max_minutes=10.0, max_steps=100)
    budget = Budget.of(config, {"total_steps": 7, "minutes": 2.5})
    assert (budget.epochs, budget.max_minutes, budget.max_steps, budget.steps) == (5, 10.0, 100, 7)
    assert budget.minutes() == pytest.approx(2.5, abs=0.01)
    state = TrainState(epoch=1, step=3, best_f1=40.0, history=[{"epoch": 1}])
    position = {**vars(state), **budget.position()}
    assert set(position) == {"epoch", "step", "total_steps", "minutes", "best_f1", "history"}
    assert TrainState.from_position(position) == state
    assert Budget.of(config, {"epoch": 2, "step": 0, "minutes": 1.0}).steps == 0  # from before step budgets
    assert Budget.of(config).steps == 0 and Budget.of(config).minutes() < 0.01


def test_named_sums_pair_names_whatever_the_order():
    assert World().sum_named({"b": 2.0, "a": 1.0}) == {"a": 1.0, "b": 2.0}
