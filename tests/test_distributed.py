"""Data-parallel training: two gloo ranks on loopback end where one process over the same
global batches ends, and only rank 0 writes anything."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from qa.cli import main
from qa.distributed import World, pick_device
from qa.train import TrainConfig, train, read_log

pytestmark = pytest.mark.slow


def _recipe(squad_file, path) -> str:
    """A tiny model trained with SGD: its step is proportional to the gradient, so float noise stays
    noise. (Adamax divides each gradient by its own size, which turns the noise in gradients that
    are mathematically zero, such as biases the span softmax cancels, into full-size steps.)"""
    recipe = {
        # batches of 3, 3 and 2 questions: the ranks get unequal shares (2+1 and 1+1)
        "training": {"train": str(squad_file), "dev": str(squad_file), "run_dir": "run", "epochs": 2,
                     "batch_size": 3, "optimizer": "sgd", "learning_rate": 0.5, "ema_decay": 0.0,
                     "tune_top_words": 5, "seed": 5, "device": "cpu"},
        "model": {"hidden": 16, "char_filters": 8, "dropout": 0.0},
    }
    path.write_text(json.dumps(recipe))
    return str(path)


def _trained_weights(net) -> dict:
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def _rank(rank: int, size: int, port: int, recipe: str, tmp) -> None:
    """One torchrun-like rank: the environment torchrun would set, then plain ``train``."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    folder = tmp / f"rank{rank}"
    folder.mkdir()
    os.chdir(folder)  # the recipe's run folder is relative: whatever a rank writes lands in its own folder
    result = train(TrainConfig.from_file(recipe))
    save_file(_trained_weights(result.net), str(tmp / f"weights-{rank}.safetensors"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _epoch_f1(run) -> list[float]:
    lines = read_log(run)
    return [x["f1"] for x in lines if x["event"] == "epoch"]


def test_two_ranks_match_one_process_and_only_rank_0_writes(squad_file, tmp_path, monkeypatch):
    recipe = _recipe(squad_file, tmp_path / "recipe.json")
    mp.spawn(_rank, args=(2, _free_port(), recipe, tmp_path), nprocs=2)
    first = load_file(str(tmp_path / "weights-0.safetensors"))
    second = load_file(str(tmp_path / "weights-1.safetensors"))

    single_dir = tmp_path / "single"
    single_dir.mkdir()
    monkeypatch.chdir(single_dir)
    single = _trained_weights(train(TrainConfig.from_file(recipe)).net)

    assert set(first) == set(single)
    assert all(torch.equal(first[k], second[k]) for k in first)  # DDP keeps the ranks identical
    assert all(torch.allclose(first[k], single[k], atol=1e-5) for k in first)  # and equal to one process
    assert list((tmp_path / "rank1").iterdir()) == []
    assert {p.name for p in (tmp_path / "rank0" / "run").iterdir()} == {"log.jsonl", "last.safetensors", "best"}
    # the sharded and gathered evaluation scores every dev question, as one process does
    assert _epoch_f1(tmp_path / "rank0" / "run") == pytest.approx(_epoch_f1(single_dir / "run"), abs=1e-6)


def test_world_of_one_and_its_shards():
    world = World()
    assert world.main and world.split([4, 5, 6]) == [4, 5, 6] and world.sum([1.5, 2.0]) == [1.5, 2.0]
    assert World(rank=1, size=2).split([4, 5, 6]) == [6]
    assert World(rank=1, size=3).shard(list(range(7))) == [1, 4]
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error(squad_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe's run folder is relative
    assert main(["train", "--config", _recipe(squad_file, tmp_path / "recipe.json"), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
