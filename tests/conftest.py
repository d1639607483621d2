"""Small SQuAD-format fixtures written by the tests themselves."""
import json

import pytest

PASSAGES = [
    {
        "title": "Normans",
        "context": "The Normans were the people who in the 10th and 11th centuries gave their name to "
                   "Normandy, a region in France. They were led by Rollo, a Viking chieftain.",
        "qas": [
            ("n1", "Who led the Normans?", "Rollo"),
            ("n2", "In what country is Normandy located?", "France"),
            ("n3", "In which centuries did the Normans name Normandy?", "10th and 11th centuries"),
        ],
    },
    {
        "title": "Warsaw",
        "context": "Warsaw is the capital and largest city of Poland. It stands on the Vistula River, "
                   "roughly 260 kilometres from the Baltic Sea.",
        "qas": [
            ("w1", "What river does Warsaw stand on?", "Vistula River"),
            ("w2", "How far is Warsaw from the Baltic Sea?", "260 kilometres"),
        ],
    },
    {
        "title": "Oxygen",
        "context": "Oxygen is a chemical element with symbol O and atomic number 8. It was discovered "
                   "by Carl Wilhelm Scheele in Uppsala in 1773.",
        "qas": [
            ("o1", "What is the atomic number of oxygen?", "8"),
            ("o2", "Who discovered oxygen?", "Carl Wilhelm Scheele"),
            ("o3", "When was oxygen discovered?", "1773"),
        ],
    },
]


ROLLO = {"Rollo", "Rollo, a Viking chieftain"}  # who led the Normans: the default model gives the apposition too


def squad_payload() -> dict:
    """The fixture passages in the official nested SQuAD v1.1 layout."""
    data = []
    for passage in PASSAGES:
        context = passage["context"]
        qas = [
            {"id": qid, "question": question, "answers": [{"text": text, "answer_start": context.index(text)}]}
            for qid, question, text in passage["qas"]
        ]
        data.append({"title": passage["title"], "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "1.1", "data": data}


@pytest.fixture
def squad_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(squad_payload()))
    return path


@pytest.fixture(autouse=True)
def feature_cache(tmp_path, monkeypatch):
    """Keep prepared-feature caches inside each test's folder, and read in float32 wherever a call leaves the
    precision to the machine, so that no result depends on whether the CPU running the tests has bfloat16 kernels."""
    monkeypatch.setenv("QA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("QA_PRECISION", "float32")


def null_model_folder(folder, null_bias: float):
    """The shipped fast model given a no-answer head whose logit is ``null_bias`` on every passage (its last
    layer zero but for the bias): a model that always (large bias) or never (very negative) abstains."""
    import torch

    from qa.checkpoint import save_model
    from qa.model import ReaderConfig, ReaderNet, glove_tensor
    from qa.reader import Reader

    shipped = Reader.load("fast")
    config = ReaderConfig.from_dict({**shipped.net.config.to_dict(), "no_answer": True})
    net = ReaderNet(config, glove_tensor())
    net.load_state_dict(shipped.net.state_dict(), strict=False)
    with torch.no_grad():
        net.null.score[-1].weight.zero_()
        net.null.score[-1].bias.fill_(null_bias)
    save_model(folder, net, {"model": config.to_dict(), "calibration": {"no_answer_threshold": 0.5}})
    return folder


@pytest.fixture(scope="session")
def abstaining_model(tmp_path_factory):
    """A model folder whose reader abstains on every question (its best guesses stay the shipped model's)."""
    return null_model_folder(tmp_path_factory.mktemp("abstaining"), 50.0)


def fit(net, batch_of_step, steps: int, lr: float = 0.01) -> list[float]:
    """``steps`` Adamax steps of ``net`` on the span loss, ``batch_of_step(step)`` giving each step's
    batch; returns the losses, for learning tests."""
    import torch

    from qa.model import span_loss

    optimizer = torch.optim.Adamax(net.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        batch = batch_of_step(step)
        loss = span_loss(net(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def split_windows(tokens, size: int, stride: int):
    """Windows of at most ``size`` tokens, starting every ``stride`` tokens, covering every token: the plain
    definition the index's and the reader's windows are checked against."""
    from qa.windows import cut_windows, window_starts

    return cut_windows(tokens, [(s, s + size) for s in window_starts(len(tokens), size, stride)])


def tiny_net(seed: int, **overrides):
    """A small untrained reader network (hidden 16, 8 character filters, ``overrides``) drawn from ``seed``, in
    eval mode, and a batcher for it: for tests of plumbing and shapes, not of answers."""
    import torch

    from qa.batching import Batcher
    from qa.model import ReaderConfig, ReaderNet, glove_tensor
    from qa.vocab import Vocabulary

    torch.manual_seed(seed)
    config = ReaderConfig(hidden=16, char_filters=8, **overrides)
    return ReaderNet(config, glove_tensor()).eval(), Batcher(Vocabulary([]), config.max_word_chars)
