"""Fine-tuning a shipped model on one's own file (qa train --from): it learns, writes a model folder that
loads and answers, calibrates it, and never touches the shipped models."""
import hashlib
import json

import pytest
import torch

from conftest import PASSAGES, squad_payload
from qa.cli import main
from qa.errors import UserError
from qa.fine_tune import fine_tune, split_by_article
from qa.reader import SHIPPED_MODELS, Reader
from qa.train import read_log

EXTRA = {"Normans": [("n4", "Who was Rollo?", "a Viking chieftain")],
         "Warsaw": [("w3", "What is the capital of Poland?", "Warsaw")],
         "Oxygen": [("o4", "What is the symbol of oxygen?", "O"), ("o5", "Where was oxygen discovered?", "Uppsala")]}


def _shipped_digest() -> str:
    """One digest of every byte of every shipped model file."""
    digest = hashlib.sha256()
    for path in sorted(SHIPPED_MODELS.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(SHIPPED_MODELS)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def twelve_questions(tmp_path):
    """The fixture passages with four more questions: twelve, over three articles."""
    payload = squad_payload()
    for article in payload["data"]:
        paragraph = article["paragraphs"][0]
        for qid, question, text in EXTRA[article["title"]]:
            paragraph["qas"].append({"id": qid, "question": question,
                                     "answers": [{"text": text, "answer_start": paragraph["context"].index(text)}]})
    path = tmp_path / "twelve.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.slow
def test_fine_tuning_learns_writes_a_model_and_leaves_the_shipped_ones_unchanged(twelve_questions, tmp_path):
    shipped = _shipped_digest()
    output = tmp_path / "domain"
    report = fine_tune("fast", str(twelve_questions), str(output), dev=str(twelve_questions), max_minutes=1.0)
    assert _shipped_digest() == shipped
    losses = [r["loss"] for r in read_log(output / "run")
              if r.get("event") == "epoch" and r["loss"] is not None]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    reader = Reader.load(output)
    assert reader.net.config.to_dict() == Reader.load("fast").net.config.to_dict()  # same settings, new weights
    assert any((a != b).any() for a, b in zip(reader.net.state_dict().values(), Reader.load("fast").net.state_dict().values()))
    symbol = ("What is the symbol of oxygen?", PASSAGES[2]["context"])
    assert Reader.load("fast").answer(*symbol, force=True)[0].text == "O and atomic number 8"  # wrong before
    assert reader.answer(*symbol, force=True)[0].text == "O"  # learned from the file
    recorded = json.loads((output / "config.json").read_text())["reading"]["max_answer_len"]
    assert recorded >= 15 and reader.options.max_answer_len == recorded  # every command reads what it records
    saved = json.loads((output / "fine-tune.json").read_text())
    assert saved["before"]["questions"] == saved["after"]["questions"] == 12 and "temperature" in saved["calibration"]
    assert report["after"]["forced_f1_answerable"] > report["before"]["forced_f1_answerable"]


def test_the_held_out_part_is_whole_articles_drawn_by_the_seed(twelve_questions, tmp_path):
    part, held = split_by_article(str(twelve_questions), tmp_path, 0.34, seed=1)
    kept = [a["title"] for a in json.loads(open(part).read())["data"]]
    out = [a["title"] for a in json.loads(open(held).read())["data"]]
    assert len(out) == 1 and sorted(kept + out) == ["Normans", "Oxygen", "Warsaw"]
    assert split_by_article(str(twelve_questions), tmp_path / "again", 0.34, seed=1)[1]  # the same draw
    assert [a["title"] for a in json.loads(open(tmp_path / "again" / "held-out.json").read())["data"]] == out


def test_too_few_questions_or_a_shipped_folder_are_refused(squad_file, tmp_path):
    with pytest.raises(UserError, match="8 questions; fine-tuning needs at least 10"):
        fine_tune("fast", str(squad_file), str(tmp_path / "out"))
    with pytest.raises(UserError, match="shipped model"):
        fine_tune("fast", str(squad_file), str(SHIPPED_MODELS / "fast"))


def test_the_fine_tuning_flags_need_from(squad_file, tmp_path, capsys):
    assert main(["train", "--train", str(squad_file), "--output", str(tmp_path / "x")]) == 2
    assert "add --from MODEL" in capsys.readouterr().err
    assert main(["train", "--squad-dev", str(squad_file)]) == 2  # not dropped silently from a recipe's run
    assert "add --from MODEL" in capsys.readouterr().err
    assert main(["train", "--from", "fast", "--train", str(squad_file), "--output", str(tmp_path / "x"),
                 "--prepare-workers", "2"]) == 2
    assert "not --config, --run-dir or --prepare-workers" in capsys.readouterr().err
    assert main(["train", "--from", "fast", "--train", str(squad_file)]) == 2
    assert "--output DIR" in capsys.readouterr().err


def _without_answers(payload: dict, titles: set[str]) -> dict:
    """``payload`` with every question of the articles ``titles`` made unanswerable (SQuAD 2.0 style)."""
    for article in payload["data"]:
        if article["title"] in titles:
            for question in article["paragraphs"][0]["qas"]:
                question["answers"], question["is_impossible"] = [], True
    return payload


def test_a_part_without_answerable_questions_is_refused_by_name(twelve_questions, tmp_path):
    payload = json.loads(twelve_questions.read_text())
    none = tmp_path / "none.json"
    none.write_text(json.dumps(_without_answers(json.loads(json.dumps(payload)), {"Normans", "Warsaw", "Oxygen"})))
    with pytest.raises(UserError, match=f"{none}: no answerable question to learn answers from"):
        fine_tune("default", str(none), str(tmp_path / "a"), dev=str(twelve_questions))
    with pytest.raises(UserError, match=f"{none}: no answerable question to choose the checkpoint on"):
        fine_tune("default", str(twelve_questions), str(tmp_path / "b"), dev=str(none))
    held = json.loads(open(split_by_article(str(twelve_questions), tmp_path / "draw", 0.15, seed=13)[1]).read())
    some = tmp_path / "some.json"  # the one article seed 13 holds out, unanswerable
    some.write_text(json.dumps(_without_answers(payload, {a["title"] for a in held["data"]})))
    with pytest.raises(UserError, match="the articles held out by seed 13 hold no answerable question"):
        fine_tune("default", str(some), str(tmp_path / "c"))
    assert not (tmp_path / "c" / "run" / "command.json").exists()  # nothing recorded: a fixed file may start it


def test_the_starting_folder_or_another_command_is_refused_as_output(twelve_questions, tmp_path):
    import shutil

    mine = tmp_path / "mine"
    shutil.copytree(SHIPPED_MODELS / "fast", mine)
    with pytest.raises(UserError, match="is the model fine-tuning starts from"):
        fine_tune(str(mine), str(twelve_questions), str(mine))
    (tmp_path / "out" / "run").mkdir(parents=True)
    (tmp_path / "out" / "run" / "command.json").write_text(json.dumps({"seed": 1}))
    with pytest.raises(UserError, match="holds a fine-tuning started with another seed"):
        fine_tune("fast", str(twelve_questions), str(tmp_path / "out"), dev=str(twelve_questions), seed=13)


def test_the_longest_answer_covers_most_of_the_files_answers(tmp_path):
    from qa.fine_tune import longest_answer

    payload = squad_payload()
    paragraph = payload["data"][0]["paragraphs"][0]
    long = paragraph["context"][: paragraph["context"].index(" They")]  # the whole first sentence: 25 tokens
    paragraph["qas"] = [{"id": f"x{k}", "question": "What?", "answers": [{"text": long, "answer_start": 0}]}
                        for k in range(20)]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(payload))
    assert longest_answer(str(path)) == 25  # 20 of the 25 answers are 25 tokens long: far more than 5%


def test_the_anchor_is_the_starting_models_weights_and_measures_the_drift():
    import torch

    from qa.distributed import World
    from qa.train import TrainConfig, anchor_distance, starting_weights

    fast = Reader.load("fast").net
    config = TrainConfig(init_from="fast", anchor_weight=0.1, model=fast.config)
    anchor = starting_weights(config, fast.config, World())
    assert set(anchor) == {n for n, p in fast.named_parameters() if p.requires_grad}
    with torch.no_grad():
        assert float(anchor_distance(fast, anchor)) == 0.0
        moved = next(p for p in fast.parameters() if p.requires_grad)
        moved.add_(0.5)  # one tensor moved by 0.5 everywhere
        assert float(anchor_distance(fast, anchor)) == pytest.approx(0.25 * moved.numel(), rel=1e-4)
    assert starting_weights(TrainConfig(init_from="fast", model=fast.config), fast.config, World()) is None


@pytest.mark.slow
def test_a_killed_fine_tuning_resumed_by_the_same_command_writes_the_same_model(twelve_questions, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from qa.checkpoint import read_checkpoint

    def command(name: str) -> list[str]:
        return [sys.executable, "-m", "qa", "train", "--from", "fast", "--train", str(twelve_questions),
                "--dev", str(twelve_questions), "--output", str(tmp_path / name), "--max-minutes", "0"]

    subprocess.run(command("whole"), check=True, capture_output=True)
    process = subprocess.Popen(command("killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "run" / "last.safetensors"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and read_checkpoint(last)[1]["position"]["epoch"] >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL  # killed in the middle, not after it finished
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    subprocess.run(command("killed"), check=True, capture_output=True)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # the last weights too: the best may come from an epoch before the kill, the last always after it
    whole, killed = (read_checkpoint(tmp_path / run / "run" / "last.safetensors")[0] for run in ("whole", "killed"))
    for group in ("model", "ema"):
        assert all(torch.equal(whole[group][k], killed[group][k]) for k in whole[group]), group


def test_rehearsal_mixes_whole_paragraphs_of_the_other_file_into_the_training_part(twelve_questions, squad_file,
                                                                                tmp_path):
    from qa.data import load_squad
    from qa.fine_tune import REHEARSAL_PREFIX, with_rehearsal

    mixed = load_squad(with_rehearsal(str(twelve_questions), str(squad_file), 4, tmp_path, seed=3)[0])
    rehearsed = [t for t in mixed["title"] if t.startswith(REHEARSAL_PREFIX)]
    mine = [t for t in mixed["title"] if not t.startswith(REHEARSAL_PREFIX)]
    assert len(mine) == 12 and 4 <= len(rehearsed) < 12  # whole paragraphs (2-3 questions each) up to the count
    source = load_squad(str(squad_file))
    by_id = dict(zip(source["id"], source["question"]))
    for qid, title, question in zip(mixed["id"], mixed["title"], mixed["question"]):
        if title.startswith(REHEARSAL_PREFIX):
            assert by_id[qid.removeprefix(REHEARSAL_PREFIX)] == question and title.removeprefix(REHEARSAL_PREFIX) in {"Normans", "Warsaw", "Oxygen"}
    again = load_squad(with_rehearsal(str(twelve_questions), str(squad_file), 4, tmp_path / "b", seed=3)[0])
    assert again["id"] == mixed["id"]  # drawn by the seed


def test_rehearsal_turns_the_anchor_off_unless_asked_and_a_resume_must_rehearse_the_same(twelve_questions,
                                                                                       squad_file, tmp_path,
                                                                                       monkeypatch):
    import qa.fine_tune as module

    seen = {}

    def stop(config, console):  # the training itself is tested above; here only what it is given
        seen.update(anchor=config.anchor_weight, train=config.train)
        raise KeyboardInterrupt

    monkeypatch.setattr("qa.train.train", stop)
    monkeypatch.setattr(module, "domain_scores", lambda *args: {"questions": 12, "forced_f1_answerable": 0.0})
    for anchor, expected in ((None, module.REHEARSAL_ANCHOR), (0.3, 0.3)):
        out = tmp_path / f"out-{anchor}"
        with pytest.raises(KeyboardInterrupt):
            fine_tune("fast", str(twelve_questions), str(out), dev=str(twelve_questions), rehearse=str(squad_file),
                      anchor_weight=anchor)
        assert seen == {"anchor": expected, "train": str(out / "run" / "train-rehearsed.json")}
    with pytest.raises(UserError, match="started with another rehearse"):
        fine_tune("fast", str(twelve_questions), str(tmp_path / "out-0.3"), dev=str(twelve_questions),
                  anchor_weight=0.3)
    with pytest.raises(UserError, match="nowhere.json: no such file"):
        fine_tune("fast", str(twelve_questions), str(tmp_path / "c"), rehearse=str(tmp_path / "nowhere.json"))
    assert main(["train", "--rehearse", str(squad_file)]) == 2  # a fine-tuning flag: needs --from


def test_a_file_with_a_byte_order_mark_is_split_and_rehearsed_as_it_loads(twelve_questions, squad_file, tmp_path):
    from qa.data import load_squad
    from qa.fine_tune import with_rehearsal

    marked = tmp_path / "marked.json"  # as Windows tools save UTF-8
    marked.write_bytes(b"\xef\xbb\xbf" + twelve_questions.read_bytes())
    part, held = split_by_article(str(marked), tmp_path / "split", 0.34, seed=1)
    assert len(load_squad(part)) + len(load_squad(held)) == 12
    rehearse = tmp_path / "rehearse.json"
    rehearse.write_bytes(b"\xef\xbb\xbf" + squad_file.read_bytes())
    assert len(load_squad(with_rehearsal(part, str(rehearse), 2, tmp_path, seed=1)[0])) > len(load_squad(part))


def test_a_model_without_the_no_answer_option_rehearses_answerable_questions_only(twelve_questions, tmp_path):
    from qa.data import load_squad
    from qa.fine_tune import REHEARSAL_PREFIX, with_rehearsal

    payload = json.loads(twelve_questions.read_text())
    for article in payload["data"]:  # every other question unanswerable (SQuAD 2.0 style)
        for k, question in enumerate(article["paragraphs"][0]["qas"]):
            if k % 2:
                question["answers"], question["is_impossible"] = [], True
    mixed_file = tmp_path / "v2.json"
    mixed_file.write_text(json.dumps(payload))
    answerable = {}
    for only in (False, True):  # whole paragraphs drawn in the same order until the count is reached
        records = load_squad(with_rehearsal(str(twelve_questions), str(mixed_file), 6, tmp_path / str(only), seed=2,
                                            answerable_only=only)[0])
        rehearsed = [a for t, a in zip(records["title"], records["answers"]) if t.startswith(REHEARSAL_PREFIX)]
        assert len(rehearsed) >= 6
        answerable[only] = sum(1 for a in rehearsed if a["text"])
    every = sum(1 for article in payload["data"] for q in article["paragraphs"][0]["qas"] if q["answers"])  # 7
    assert answerable[True] == every > answerable[False]  # counting only what trains draws every paragraph here
