"""The public API: ``Reader.load()`` and ``reader.answer(question, context)``.

``Answer.score`` is p(start) * p(end) under the model's start and end softmaxes over the passage.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qa.checkpoint import CONFIG_FILE, DIGEST_KEY, ModelFileError, load_weights, read_json

if TYPE_CHECKING:
    from qa.predict import AttentionMaps

DEFAULT_MODEL = Path(__file__).parent / "model"
MAX_QUESTION_TOKENS = 64  # longer questions are cut to their first 64 tokens, with a warning


@dataclass
class Answer:
    """One answer: ``context[start:end] == text``."""

    text: str
    start: int
    end: int
    score: float
    attention: "AttentionMaps | None" = None  # with ``with_attention=True``; see ``qa.predict.AttentionMaps``

    def to_dict(self) -> dict:
        """The keys of the Hugging Face question-answering pipeline."""
        return {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}


class Reader:
    """A trained reader network with its vocabulary, ready to answer questions."""

    def __init__(self, net, batcher, folder: Path, window_tokens: int = 400, window_stride: int = 300,
                 temperature: float = 1.0, bfloat16: bool = False):
        if not temperature > 0:
            raise ValueError("temperature must be positive")
        if not 0 < window_stride < window_tokens:
            raise ValueError(f"window_stride must be between 1 and window_tokens - 1 ({window_tokens - 1})")
        self.net = net
        self.batcher = batcher
        self.folder = folder
        self.window_tokens = window_tokens  # longest passage read in one piece
        self.window_stride = window_stride  # tokens between the starts of consecutive windows
        self.temperature = temperature  # divides the span logits so that scores are calibrated
        self.bfloat16 = bfloat16  # run the network under bfloat16 autocast (see qa.predict.predict)

    @classmethod
    def load(cls, path: str | Path | None = None, bfloat16: bool = False) -> "Reader":
        """Load a model folder (``config.json`` + ``model.safetensors``); default: the shipped model."""
        from qa.batching import Batcher
        from qa.model import ReaderConfig, ReaderNet, glove_tensor
        from qa.vocab import Vocabulary

        folder = Path(path) if path is not None else DEFAULT_MODEL
        if not folder.is_dir():
            raise ModelFileError(f"{folder}: no such model folder")
        settings = read_json(folder / CONFIG_FILE)
        try:
            config = ReaderConfig.from_dict(settings["model"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{folder / CONFIG_FILE}: not a reader config ({error})") from None
        net = ReaderNet(config, glove_tensor())
        load_weights(folder, net, settings.get(DIGEST_KEY))
        net.eval()
        temperature = float(settings.get("calibration", {}).get("temperature", 1.0))
        return cls(net, Batcher(Vocabulary(config.tuned_words), config.max_word_chars), folder, temperature=temperature,
                   bfloat16=bfloat16)

    def answer(self, question: str, context: str, top_k: int = 1, max_answer_len: int = 15,
               min_score: float = 0.0, with_attention: bool = False) -> list[Answer]:
        """The ``top_k`` best answers to ``question`` in ``context``, best first.

        Answers scoring below ``min_score`` are left out, so an empty list means "abstain".
        With ``with_attention`` each answer carries the attention maps of the window it came from.
        """
        return self.answer_batch([question], [context], top_k=top_k, max_answer_len=max_answer_len,
                                 min_score=min_score, with_attention=with_attention)[0]

    def answer_batch(self, questions: list[str], contexts: list[str], batch_size: int = 64, top_k: int = 1,
                     max_answer_len: int = 15, min_score: float = 0.0,
                     with_attention: bool = False) -> list[list[Answer]]:
        """Answers for many (question, context) pairs, batched by length; same results as ``answer``.

        Contexts longer than ``window_tokens`` are cut into windows every ``window_stride`` tokens;
        the answers of all windows are merged, each character span once.
        """
        from qa.features import Example, PreparedSet
        from qa.predict import predict
        from qa.tokenize import Tokens, tokenize_many
        from qa.windows import merge_ranked, split_windows

        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
        if top_k < 1 or max_answer_len < 1 or batch_size < 1:
            raise ValueError("top_k, max_answer_len and batch_size must be at least 1")
        if not 0.0 <= min_score <= 1.0:
            raise ValueError("min_score must be between 0 and 1")
        for question, context in zip(questions, contexts):
            if not isinstance(question, str) or not question.strip():
                raise ValueError("a question is empty")
            if not isinstance(context, str) or not context.strip():
                raise ValueError("a passage is empty")
        unique = list(dict.fromkeys(contexts))
        windows = {c: split_windows(t, self.window_tokens, self.window_stride)
                   for c, t in zip(unique, tokenize_many(unique))}
        data = PreparedSet([], [], [])
        owners = []
        for n, question in enumerate(tokenize_many(questions)):
            if len(question) > MAX_QUESTION_TOKENS:
                warnings.warn(f"question {n} has {len(question)} tokens; only the first {MAX_QUESTION_TOKENS} are read",
                              stacklevel=3)
                question = Tokens(*(values[:MAX_QUESTION_TOKENS] for values in
                                    (question.words, question.lemmas, question.starts, question.ends)))
            for window in windows[contexts[n]]:
                data.contexts.append(contexts[n])
                data.context_tokens.append(window)
                data.examples.append(Example(str(n), len(data.contexts) - 1, question, (0, 0), {}))
                owners.append(n)
        predictions = predict(self.net, self.batcher, data, batch_size=batch_size, max_answer_len=max_answer_len,
                              top_k=top_k, with_attention=with_attention, temperature=self.temperature,
                              bfloat16=self.bfloat16)
        candidates: list[list[Answer]] = [[] for _ in questions]
        for owner, prediction in zip(owners, predictions):
            candidates[owner] += [Answer(t, s, e, score, prediction.attention) for t, s, e, score in
                                  zip(prediction.texts, prediction.starts, prediction.ends, prediction.scores)]
        return [[a for a in merge_ranked(found, top_k) if a.score >= min_score] for found in candidates]
