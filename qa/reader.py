"""The public API: ``Reader.load()``, ``reader.answer(question, context)`` and ``reader.predict``.

``Answer.score`` is p(start) * p(end) under the model's start and end softmaxes over the whole
passage (one softmax over all the windows read), at the model's calibrated temperature. A model
with the no-answer option also scores "the passage does not answer this": when that probability
is above the model's threshold the reader abstains (``answer`` returns no answers; ``predict``
keeps the best guesses and says so), unless told to ``force`` an answer.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

from qa.answers import Answer, AttentionMaps, Prediction  # noqa: F401  (the library's result types, importable here)
from qa.checkpoint import CONFIG_FILE, DIGEST_KEY, ModelFileError, load_weights, read_json
from qa.errors import UserError
from qa.heat import DEFAULT_VIEW, LEVEL_RATIOS, VIEWS, checked_level_ratios
from qa.inputs import is_blank, is_unicode

SHIPPED_MODELS = Path(__file__).parent / "models"
MODEL_NAMES = ("default", "fast")  # the shipped models: MiniLM features + GloVe, and GloVe alone
NO_ANSWER_THRESHOLD = 0.5  # abstain above this no-answer probability when the model folder names none
INDEX_WINDOWS = 4  # windows an index retrieves for a question, all read (docs/documents.md: measured)
PRECISION_ENV = "QA_PRECISION"  # float32 or bfloat16: pins the precision a call leaves to the machine (tests pin float32)


def reads_in_bfloat16(bfloat16: bool | None, contextual: bool = True) -> bool:
    """Whether to read under bfloat16 autocast: as asked; else as ``$QA_PRECISION`` says; else for a model that
    reads a contextual encoder wherever this CPU has bfloat16 kernels. Measured on an EPYC with AVX512-BF16
    (docs/performance.md): ``default`` reads dev in 0.53 of float32's time at F1 within 0.05, while ``fast``,
    without the encoder's large matmuls, answers one question slower in bfloat16 (12.1 ms against 10.2)."""
    if bfloat16 is not None:
        return bfloat16
    pinned = os.environ.get(PRECISION_ENV, "").strip().lower()
    if pinned not in ("", "float32", "bfloat16"):
        raise UserError(f"${PRECISION_ENV} must be float32 or bfloat16, got {pinned!r}")
    if pinned:
        return pinned == "bfloat16"
    from qa.model import cpu_has_bfloat16_kernels

    return contextual and cpu_has_bfloat16_kernels()


def _recorded_options(settings: dict, bfloat16: bool):
    """The reading options a model folder's ``config.json`` records: its calibrated temperature and the
    longest answer it reads (fine-tuning records one), in the precision chosen."""
    from qa.inference import ReadingOptions

    temperature = float(settings.get("calibration", {}).get("temperature", 1.0))
    longest = int(settings.get("reading", {}).get("max_answer_len", ReadingOptions.max_answer_len))
    return ReadingOptions(temperature=temperature, bfloat16=bfloat16, max_answer_len=longest)


def model_folder(model: str | Path | None) -> Path:
    """The folder of a model given by shipped name (``default``, ``fast``) or by folder; None is ``default``.

    A name wins over a folder of the same name in the working directory: write ``./fast`` for that one.
    """
    name = "default" if model is None else str(model)
    return SHIPPED_MODELS / name if name in MODEL_NAMES else Path(model)


def refuse_shipped(folder: Path, what: str) -> None:
    """A ``UserError`` when ``folder`` is, or lies inside, the shipped models' folder: ``what`` (calibration,
    fine-tuning) writes only to a new folder or the user's own."""
    if Path(folder).resolve().is_relative_to(SHIPPED_MODELS.resolve()):
        raise UserError(f"{folder}: a shipped model's folder, which {what} never changes: name another with --output")


def _check_questions(questions: list[str]) -> None:
    """A ``UserError`` for a question that is not text or is blank."""
    for question in questions:
        if not isinstance(question, str) or is_blank(question):
            raise UserError("a question is empty")
        if not is_unicode(question):
            raise UserError("a question is not valid Unicode text (is it UTF-8?)")


class Reader:
    """A trained reader network with its vocabulary, ready to answer questions."""

    WINDOWS_CACHED = 64  # contextual features of the most recently used windows are kept (qa chat encodes its passage once)

    def __init__(self, net, batcher, folder: Path | None = None, options=None,
                 no_answer_threshold: float = NO_ANSWER_THRESHOLD, encoder=None,
                 attention_view: str = DEFAULT_VIEW, level_ratios: dict[str, tuple[float, ...]] | None = None):
        """``options``: how this reader reads (``qa.inference.ReadingOptions``; None: its defaults).
        ``attention_view``: the view shown when a call names none (the model's measured best);
        ``level_ratios``: view -> the ratios to uniform its heat levels need (``qa.heat.LEVEL_RATIOS`` for
        a view not in it)."""
        from qa.contextual import WindowCache
        from qa.inference import ReadingOptions

        self.net = net
        self.encoder = encoder  # the frozen contextual encoder (qa.contextual) of a model that reads it
        self.window_cache = WindowCache(self.WINDOWS_CACHED)
        self.batcher = batcher
        self.folder = folder
        self.options = options or ReadingOptions()  # windows, question cut, temperature, precision
        self.no_answer_threshold = no_answer_threshold  # abstain when p(no answer) is above it
        self.attention_view = attention_view  # qa.heat.VIEWS: the view shown unless a call names another
        self.level_ratios = dict(level_ratios or {})

    @property
    def has_no_answer(self) -> bool:
        """Whether the model scores the no-answer option (and so can abstain)."""
        return self.net.config.no_answer

    @property
    def abstains_above(self) -> float | None:
        """The no-answer probability above which the reader abstains; None for a model without the option."""
        return self.no_answer_threshold if self.has_no_answer else None

    @property
    def precision(self) -> str:
        """The precision this reader reads in: "bfloat16" (autocast) or "float32"."""
        return "bfloat16" if self.options.bfloat16 else "float32"

    @property
    def temperature(self) -> float:
        """The calibrated temperature that divides the span logits."""
        return self.options.temperature

    @classmethod
    def load(cls, path: str | Path | None = None, bfloat16: bool | None = None,
             abstain_above: float | None = None) -> "Reader":
        """Load a shipped model by name (``default``, ``fast``) or a model folder (``config.json`` +
        ``model.safetensors``); None loads ``default``. ``bfloat16``: read under bfloat16 autocast (True), in
        float32 for bit-exact results (False), or as the machine suits (None: ``reads_in_bfloat16``).
        ``abstain_above``: the no-answer probability above which the reader abstains, instead of the
        threshold the model folder records."""
        from qa.batching import Batcher
        from qa.model import BFLOAT16_SLOW, ReaderConfig, ReaderNet, cpu_has_bfloat16_kernels, glove_tensor
        from qa.vocab import Vocabulary

        if abstain_above is not None and not 0.0 <= abstain_above <= 1.0:
            raise UserError(f"the no-answer threshold must be a probability between 0 and 1, got {abstain_above}")
        folder = model_folder(path)
        if not folder.is_dir():
            raise ModelFileError(f"{folder}: no such model folder")
        settings = read_json(folder / CONFIG_FILE)
        try:
            config = ReaderConfig.from_dict(settings["model"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{folder / CONFIG_FILE}: not a reader config ({error})") from None
        bfloat16 = reads_in_bfloat16(bfloat16, contextual=bool(config.contextual))
        if bfloat16 and not cpu_has_bfloat16_kernels():
            warnings.warn(BFLOAT16_SLOW, stacklevel=2)
        net = ReaderNet(config, glove_tensor())
        load_weights(folder, net, settings.get(DIGEST_KEY))
        net.eval()
        encoder = None
        if config.contextual:  # the encoder (qa.bert) is loaded only for a model that reads it
            from qa.contextual import ContextualEncoder, EncoderSettings

            encoder = ContextualEncoder(EncoderSettings.of(config, bfloat16))
        recorded = settings.get("attention", {})  # the view scripts/attention_views.py measured best, if any
        view = recorded.get("view", DEFAULT_VIEW) if isinstance(recorded, dict) else recorded
        if not isinstance(view, str) or view not in VIEWS:  # a list or number would not even hash
            raise ModelFileError(f"{folder / CONFIG_FILE}: unknown attention view {view!r}")
        level_ratios = recorded.get("levels", {}) if isinstance(recorded, dict) else {}
        try:  # the heat levels scripts/attention_views.py fitted per view, if any
            if not isinstance(level_ratios, dict) or not set(level_ratios) <= set(VIEWS):
                raise ValueError(f"levels must map views ({', '.join(VIEWS)}) to level ratios")
            level_ratios = {v: checked_level_ratios(ratios) for v, ratios in level_ratios.items()}
        except ValueError as error:
            raise ModelFileError(f"{folder / CONFIG_FILE}: attention {error}") from None
        calibration = settings.get("calibration", {})
        return cls(net, Batcher(Vocabulary(config.tuned_words), config.max_word_chars), folder,
                   _recorded_options(settings, bfloat16),
                   no_answer_threshold=float(calibration.get("no_answer_threshold", NO_ANSWER_THRESHOLD)
                                             if abstain_above is None else abstain_above),
                   encoder=encoder, attention_view=view, level_ratios=level_ratios)

    def answer(self, question: str, context: str, top_k: int = 1, max_answer_len: int | None = None,
               min_score: float = 0.0, with_attention: bool = False, attention_view: str | None = None,
               force: bool = False) -> list[Answer]:
        """The ``top_k`` best answers to ``question`` in ``context``, best first, none longer than ``max_answer_len``
        tokens (None: the longest the model records, 15 unless fine-tuning recorded another).

        An empty list means "abstain": the model judged that the passage does not answer the question
        (unless ``force``), or no answer scored ``min_score``. ``predict`` gives the best guesses and
        the no-answer probability even then.
        With ``with_attention`` each answer carries the attention maps of the window it came from
        (``attention``), the ``attention_view`` heat over that window (``heat``, see ``qa.heat.VIEWS``; None:
        the model's own view, ``attention_view`` of the reader)
        and what its own tokens attended to (``evidence``).
        """
        return self.answer_batch([question], [context], top_k=top_k, max_answer_len=max_answer_len,
                                 min_score=min_score, with_attention=with_attention, attention_view=attention_view,
                                 force=force)[0]

    def answer_batch(self, questions: list[str], contexts: list[str], batch_size: int = 64, top_k: int = 1,
                     max_answer_len: int | None = None, min_score: float = 0.0, with_attention: bool = False,
                     attention_view: str | None = None, force: bool = False) -> list[list[Answer]]:
        """Answers for many (question, context) pairs, batched by length; same results as ``answer``."""
        if not 0.0 <= min_score <= 1.0:
            raise UserError("min_score must be between 0 and 1")
        predictions = self.predict_batch(questions, contexts, batch_size=batch_size, top_k=top_k,
                                         max_answer_len=max_answer_len, with_attention=with_attention,
                                         attention_view=attention_view, force=force)
        return [[] if p.abstained else [a for a in p.answers if a.score >= min_score] for p in predictions]

    def predict(self, question: str, context: str, top_k: int = 1, max_answer_len: int | None = None,
                with_attention: bool = False, attention_view: str | None = None, force: bool = False) -> Prediction:
        """The whole result for one question: the ``top_k`` best answers (kept as best guesses when the
        reader abstains), ``no_answer`` (the probability that the passage does not answer, None for a model
        without the option) and ``abstained`` (that probability is above the threshold, and not ``force``)."""
        return self.predict_batch([question], [context], top_k=top_k, max_answer_len=max_answer_len,
                                  with_attention=with_attention, attention_view=attention_view, force=force)[0]

    def predict_batch(self, questions: list[str], contexts: list[str], batch_size: int = 64, top_k: int = 1,
                      max_answer_len: int | None = None, with_attention: bool = False, attention_view: str | None = None,
                      force: bool = False) -> list[Prediction]:
        """``predict`` for many (question, context) pairs, batched by length.

        Each distinct context is tokenized and encoded once. Contexts longer than the window are
        read in overlapping windows (``ReadingOptions``: the best by BM25 first, more where the best
        answer is not confident); the answers of all windows read are merged, each character span once.
        """
        from qa.inference import Passages
        from qa.tokenize import tokenize_many

        if len(questions) != len(contexts):
            raise UserError(f"{len(questions)} questions but {len(contexts)} contexts")
        for context in contexts:
            if not isinstance(context, str) or is_blank(context):
                raise UserError("a passage is empty")
            if not is_unicode(context):
                raise UserError("a passage is not valid Unicode text (is it UTF-8?)")
        unique = list(dict.fromkeys(contexts))
        index = {c: i for i, c in enumerate(unique)}
        passages = Passages(unique, tokenize_many(unique), self._queries(questions, [index[c] for c in contexts]))
        return self.read(passages, self._options(top_k, max_answer_len, batch_size=batch_size),
                         display=self._display(with_attention, attention_view), force=force)

    def predict_documents(self, questions: list[str], collection, top_k: int = 1, max_answer_len: int | None = None,
                          with_attention: bool = False, attention_view: str | None = None, force: bool = False,
                          without: list[int | None] | None = None) -> list[Prediction]:
        """``predict`` for each question against a ``qa.collection.Collection``: the windows of all its
        documents ranked together, read under one softmax and one no-answer option, the top answers from
        any of them, each with its ``source``. ``without[i]``: a document question i must not read (None: all)."""
        from qa.collection import passages_of

        queries = self._queries(questions, [0] * len(questions))
        if without is not None:
            queries = [replace(query, without=skip) for query, skip in zip(queries, without, strict=True)]
        passages = passages_of([collection], queries)
        options = self._options(top_k, max_answer_len)
        predictions = self.read(passages, options, display=self._display(with_attention, attention_view), force=force)
        for prediction in predictions:
            collection.cite(prediction.answers)
        return predictions

    def predict_index(self, questions: list[str], index, top_k: int = 1, max_answer_len: int | None = None,
                      with_attention: bool = False, attention_view: str | None = None, force: bool = False,
                      windows: int = INDEX_WINDOWS) -> list[tuple[object, Prediction]]:
        """``predict`` for each question against an index (``qa.index.Index``): the ``windows`` windows of all
        its documents that BM25 ranks best for the question, overlapping ones joined, read together as one
        collection (``qa.collection.Collection.of_hits``), each answer with its ``source``. Returns each
        question's collection (its ``text`` is what answers' offsets index; None where no window matched
        the question's content words) and prediction."""
        from qa.collection import Collection, passages_of
        from qa.index import joined

        _check_questions(questions)
        hits = [joined(index.search(question, windows)) for question in questions]
        found = [k for k, question_hits in enumerate(hits) if question_hits]
        collections = {k: Collection.of_hits(hits[k]) for k in found}
        queries = self._queries([questions[k] for k in found], list(range(len(found))))
        passages = passages_of([collections[k] for k in found], queries)
        options = self._options(top_k, max_answer_len, max_windows=0, first_windows=0)
        read = dict(zip(found, self.read(passages, options, display=self._display(with_attention, attention_view),
                                         force=force)))
        results = []
        for k in range(len(questions)):
            if k in read:
                collections[k].cite(read[k].answers)
                results.append((collections[k], replace(read[k], id=str(k))))
            else:
                results.append((None, Prediction(str(k), [], 1.0 if self.has_no_answer else None, not force,
                                                 self.abstains_above)))
        return results

    def answer_documents(self, question: str, documents, top_k: int = 1, force: bool = False) -> list[Answer]:
        """The ``top_k`` best answers to ``question`` in ``documents`` (a ``qa.collection.Collection``, or
        a path, or paths, of files and folders: PDF, HTML, DOCX, Markdown, text), each with its ``source``; an
        empty list means the reader abstains (none of the documents seems to answer). Unreadable files are skipped
        with a warning."""
        from qa.collection import Collection
        from qa.context import Context

        if not isinstance(documents, Collection):
            one = isinstance(documents, (str, os.PathLike))  # one path, not a list of its characters
            context = Context.of_paths([documents] if one else list(documents))
            for warning in context.warnings():
                warnings.warn(warning, stacklevel=2)
            documents = context.collection
        prediction = self.predict_documents([question], documents, top_k=top_k, force=force)[0]
        return [] if prediction.abstained else prediction.answers

    def _queries(self, questions: list[str], passages: list[int]):
        """``qa.inference.Query``s of ``questions`` about ``passages``, warning of those that will be cut."""
        from qa.inference import Query
        from qa.tokenize import tokenize_many

        _check_questions(questions)
        queries, most = [], self.options.max_question_tokens
        for n, question in enumerate(tokenize_many(questions)):
            if len(question) > most:
                warnings.warn(f"question {n} has {len(question)} tokens; only the first {most} are read", stacklevel=4)
            queries.append(Query(str(n), questions[n], question, passages[n]))
        return queries

    def _options(self, top_k: int, max_answer_len: int | None, **more):
        """The reader's options for one call: ``top_k`` answers of at most ``max_answer_len`` tokens (None: the
        longest the model records), and ``more``."""
        longest = self.options.max_answer_len if max_answer_len is None else max_answer_len
        return replace(self.options, top_k=top_k, max_answer_len=longest, **more)

    def _display(self, with_attention: bool, attention_view: str | None):
        """What is drawn beside the answers: the heat of ``attention_view`` (None: the reader's), or nothing."""
        from qa.heat import HeatDisplay

        if not with_attention:
            return None
        view = attention_view or self.attention_view
        return HeatDisplay(view, self.level_ratios.get(view, LEVEL_RATIOS), with_attention=True)

    def read(self, passages, options=None, world=None, progress=None, features=None, display=None,
             force: bool = False) -> list[Prediction]:
        """The one path from prepared text (``qa.inference.Passages``) to predictions, shared by the library,
        the terminal, ``qa evaluate``, ``qa calibrate`` and training's dev evaluation: read (``qa.inference.read``
        with ``options``, None: the reader's), then abstain where the model says the passage does not answer,
        unless ``force``. ``features``: where the contextual features come from (None: encoded as needed,
        through the reader's window cache); ``display``: what is shown beside the answers (``qa.heat.HeatDisplay``)."""
        from qa.distributed import World
        from qa.inference import read

        if features is None and self.encoder is not None:
            from qa.contextual import LiveFeatures

            features = LiveFeatures(self.encoder, passages.texts, passages.tokens, [q.text for q in passages.queries],
                                    [q.question for q in passages.queries], self.window_cache)
        predictions = read(self.net, self.batcher, passages, options or self.options, world or World(), progress,
                           features, display)
        for prediction in predictions:
            prediction.threshold = self.abstains_above
            prediction.abstained = not force and self.abstains(prediction)
        return predictions

    def abstains(self, prediction: Prediction) -> bool:
        """Whether the model's no-answer probability for ``prediction`` is above its threshold (the
        official SQuAD 2.0 rule: answer up to the threshold)."""
        return prediction.no_answer is not None and prediction.no_answer > self.no_answer_threshold
