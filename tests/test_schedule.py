import pytest

from qa.train import Budget, TrainConfig, scheduled_learning_rate


def budget_progress(config: TrainConfig, position: dict, minutes: float, steps_per_epoch: int) -> float:
    """The share of ``config``'s budget spent at a checkpoint's ``position``, ``minutes`` in."""
    budget = Budget(config.epochs, config.max_minutes, config.max_steps, position["total_steps"])
    return budget.share(position["epoch"] + position["step"] / steps_per_epoch, minutes)


def _position(epoch=0, step=0, total_steps=0):
    return {"epoch": epoch, "step": step, "total_steps": total_steps}


def test_progress_follows_whichever_budget_runs_out_first():
    epochs_only = TrainConfig(epochs=4)
    assert budget_progress(epochs_only, _position(epoch=1, step=50), 0.0, 100) == pytest.approx(1.5 / 4)
    timed = TrainConfig(epochs=30, max_minutes=120)
    assert budget_progress(timed, _position(epoch=1), 90.0, 100) == pytest.approx(0.75)
    stepped = TrainConfig(epochs=30, max_steps=1000, max_minutes=120)
    assert budget_progress(stepped, _position(total_steps=900), 6.0, 100) == pytest.approx(0.9)
    assert budget_progress(timed, _position(), 500.0, 100) == 1.0  # overrun clamps


def test_learning_rate_is_constant_then_falls_linearly_to_zero():
    constant = TrainConfig(learning_rate=0.002)
    assert {scheduled_learning_rate(constant, p) for p in (0.0, 0.5, 1.0)} == {0.002}
    decayed = TrainConfig(learning_rate=0.002, decay_fraction=0.25)
    rates = [scheduled_learning_rate(decayed, p) for p in (0.0, 0.5, 0.75, 0.875, 1.0)]
    assert rates == pytest.approx([0.002, 0.002, 0.002, 0.001, 0.0])


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_a_decay_fraction_outside_0_to_1_is_refused(fraction):
    with pytest.raises(ValueError, match="decay_fraction must be between 0 and 1"):
        TrainConfig(decay_fraction=fraction)
