"""Prepared passages and questions -> ranked answers: the reading core behind ``Reader.read``, the one
path that the library, the terminal, ``qa evaluate``, ``qa calibrate`` and training's dev evaluation share.

Each passage is cut into windows of at most ``window_tokens`` tokens (a passage that fits is one
window) and each question to its first ``max_question_tokens`` tokens. Every (question, window)
pair is a row; rows sorted by window length are read in batches, each window and each question
encoded once. A question's answers from all its windows are merged, each character span once, and
scored under one start and one end softmax over the whole passage: each token's logit comes from
the window that owns it (overlaps split at their middle), so scores compare across windows.
A model with the no-answer option also gives each window a null logit; the passage's is their
maximum, it joins both softmaxes, and ``Prediction.no_answer`` is its probability.

A long passage is read in its ``first_windows`` best windows by BM25, and in the rest of its
``max_windows`` only for a question whose best answer there scores below ``confident_score``.
Questions are read in runs of consecutive passages of about ``RUN_ROWS`` first-reading rows. One
rule keeps memory bounded: a run owns every text it encoded and lets all of them go when it ends
(``qa.contextual.WindowCache`` keeps window features between calls). What is shown beside the
answers (``Display``, e.g. ``qa.heat.HeatDisplay``) is drawn from a batch's attention for the answers
that enter a question's best list only.
Under ``torchrun`` the batches are dealt out to the ranks and the answers gathered: every row
sits in the same batch as in one process, so the results are the same bits (at the same number of
threads a process: float32 sums split over more threads can differ in the last bits).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Protocol

import numpy as np
import torch

from qa.answers import Answer, Prediction, SpanLogits
from qa.batching import SHAPE_MULTIPLE, Batcher, EncodedText
from qa.contextual import FeatureSource
from qa.decode import Spans, best_spans
from qa.distributed import World
from qa.errors import UserError
from qa.features import PreparedSet
from qa.model import ReaderNet, ReaderOutput
from qa.retrieval import Ranker
from qa.tokenize import Tokens
from qa.windows import cut_windows, merge_ranked, owned_ranges, segment_windows

# Candidates each row contributes beyond top_k: its best spans by its own window's logits. Every row's are
# kept until all of a question's are rescored over the whole passage, where the order near a window's edge
# can change (cutting each question's list to top_k + 5 by window scores first lost the passage's best
# span in 1 of 240 whole-article questions).
CANDIDATE_MARGIN = 5
# Queries are read in runs of consecutive passages of about this many first-reading rows; a run's texts
# stay encoded until it ends, so that its second reading finds them.
RUN_ROWS = 4096


@dataclass(frozen=True)
class ReadingOptions:
    """How questions are read and how many answers come back: the one place of the reading defaults."""

    top_k: int = 1  # answers per question
    max_answer_len: int = 15  # tokens
    batch_size: int = 64  # rows (question, window) per forward pass
    window_tokens: int = 200  # longest passage read in one piece (pipelines/JOURNAL.md: shorter reader windows)
    window_stride: int = 150  # tokens between the starts of consecutive windows
    max_question_tokens: int = 64  # longer questions are cut
    max_windows: int = 4  # read only this many windows of a passage, the best by BM25 (0: all)
    first_windows: int = 2  # read this many best windows first, the rest only below confident_score (0: all at once)
    # a question whose best answer in its first windows scores this reads no more (fitted on held-out
    # training articles: 60% of questions stop at 2 windows)
    confident_score: float = 0.43
    temperature: float = 1.0  # divides the span logits so that scores are calibrated
    bfloat16: bool = False  # run the network under bfloat16 autocast; span scores stay float32
    with_logits: bool = False  # each top answer carries the passage's span logits (calibration)

    def __post_init__(self):
        if min(self.top_k, self.max_answer_len, self.batch_size, self.max_question_tokens) < 1:
            raise UserError("top_k, max_answer_len, batch_size and max_question_tokens must be at least 1")
        if self.max_windows < 0 or self.first_windows < 0:
            raise UserError("max_windows and first_windows must be 0 (all) or more")
        if not 0 <= self.confident_score:
            raise UserError("confident_score must be 0 or more")
        if not 0 < self.window_stride < self.window_tokens:
            raise UserError(f"window_stride must be between 1 and window_tokens - 1 ({self.window_tokens - 1})")
        if not self.temperature > 0:
            raise UserError("temperature must be positive")


@dataclass(frozen=True)
class Query:
    """One question, as text and tokens, about ``passages[passage]``; ``id`` names it in the results."""

    id: str
    text: str
    question: Tokens
    passage: int
    without: int | None = None  # a document of a collection passage not to read (the open setting's "without own")


@dataclass
class Passages:
    """Prepared text to read: each passage once with its tokens, and the queries about them. A passage
    may be a collection of documents (``qa.collection``): ``breaks[passage]`` lists the token at which
    each of its documents starts (the first 0), so that no window runs from one document into the next;
    its windows are ranked and read together, under one softmax, as one passage's are."""

    texts: list[str]
    tokens: list[Tokens]
    queries: list[Query]
    breaks: dict[int, list[int]] = field(default_factory=dict)

    def documents(self, passage: int) -> list[int]:
        """The first token of each document of ``passage`` ([0] for a passage that is one text)."""
        return self.breaks.get(passage, [0])

    @classmethod
    def of(cls, data: PreparedSet) -> "Passages":
        """The passages and questions of a prepared dataset, one query per example, in order."""
        queries = [Query(e.id, e.question_text, e.question, e.context_index) for e in data.examples]
        return cls(data.contexts, data.context_tokens, queries)


class Display(Protocol):
    """What is shown beside the answers, drawn from the forward pass that found them (``qa.heat``)."""

    document_strip: bool  # whether a passage read in several windows gets the heat of all of them

    def decorate(self, output: ReaderOutput, row: int, window: Tokens, question: Tokens, answers: list[Answer]) -> None:
        """Give ``answers``, found in batch row ``row`` of ``output``, what they show."""

    def document(self, tokens: Tokens, strip: np.ndarray, answers: list[Answer]) -> None:
        """Give ``answers`` the ``strip`` (each passage token's highest heat ratio over the windows read)."""


def cut_question(question: Tokens, limit: int) -> Tokens:
    """The question's first ``limit`` tokens."""
    if len(question) <= limit:
        return question
    return Tokens(question.words[:limit], question.lemmas[:limit], question.starts[:limit], question.ends[:limit])


@dataclass
class _Plan:
    """The windows of every asked-about passage, and which of them each query reads: ``first`` at once,
    ``later`` only if what the first ones found is not confident enough."""

    windows: list[Tokens]
    window_passage: list[int]  # passage index of each window
    window_first: list[int]  # index in its passage of each window's first token
    window_document: list[int]  # index in its passage's documents (``Passages.breaks``) of each window
    passage_windows: dict[int, range]  # passage index -> indices of its windows, in passage order
    first: list[list[int]]  # query index -> the windows it reads first
    later: list[list[int]]  # query index -> the windows it reads if its first ones are not confident

    def rows(self, queries: list[int], picks: list[list[int]]) -> list[tuple[int, int]]:
        """(query, window) rows of ``queries``' picked windows (``first`` or ``later``), sorted by window
        length so that a batch pads little (stable: ties keep question order)."""
        rows = [(q, w) for q in queries for w in picks[q]]
        return sorted(rows, key=lambda row: len(self.windows[row[1]]))

    def window_end(self, window: int) -> int:
        """The index in its passage of the token after ``window``'s last."""
        return self.window_first[window] + len(self.windows[window])

    def runs(self, queries: list[Query]) -> list[list[int]]:
        """Query indices in runs of consecutive passages, each of about ``RUN_ROWS`` first-reading rows
        (a passage asked more than that, such as a collection, is split over several runs)."""
        runs, rows = [[]], 0
        for q, query in enumerate(queries):
            alone = queries[runs[-1][0]].passage == query.passage if runs[-1] else False
            if rows >= RUN_ROWS and (query.passage != queries[q - 1].passage or alone):
                runs, rows = runs + [[]], 0
            runs[-1].append(q)
            rows += len(self.first[q])
        return runs


def _plan(passages: Passages, options: ReadingOptions) -> _Plan:
    """Cut each asked-about passage into windows and pick, by BM25, the windows each query reads first
    and later (all of them at once for a passage within ``first_windows`` or ``max_windows``)."""
    plan = _Plan([], [], [], [], {}, [], [])
    for passage in dict.fromkeys(q.passage for q in passages.queries):
        tokens, breaks = passages.tokens[passage], passages.documents(passage)
        spans = segment_windows(len(tokens), breaks, options.window_tokens, options.window_stride)
        plan.passage_windows[passage] = range(len(plan.windows), len(plan.windows) + len(spans))
        plan.windows += cut_windows(tokens, spans)
        plan.window_passage += [passage] * len(spans)
        plan.window_first += [first for first, _ in spans]
        plan.window_document += [bisect.bisect_right(breaks, first) - 1 for first, _ in spans]
    staged = 0 < options.first_windows < (options.max_windows or math.inf)  # two readings, not one
    at_once = options.first_windows if staged else 0
    rankers: dict[int, Ranker] = {}
    for query in passages.queries:
        indices = [w for w in plan.passage_windows[query.passage] if plan.window_document[w] != query.without]
        most = options.max_windows or len(indices)  # windows read at the most
        if len(indices) > (at_once or most):
            if query.passage not in rankers:
                rankers[query.passage] = Ranker([plan.windows[w] for w in plan.passage_windows[query.passage]])
            first = plan.passage_windows[query.passage].start
            ranked = [first + k for k in rankers[query.passage].best(query.question, len(rankers[query.passage]))]
            kept = set(indices)
            indices = [w for w in ranked if w in kept][:most]  # best first
        cut = at_once or len(indices)
        plan.first.append(sorted(indices[:cut]))
        plan.later.append(sorted(indices[cut:]))
    return plan


def passage_null_logit(window_nulls: np.ndarray) -> float:
    """The passage's null logit from its windows' (nan for a window not read): their maximum. Of four
    poolings measured on held-out training articles (pipelines/JOURNAL.md), it refused fewest
    answerable questions on whole articles for most other-article questions caught."""
    return float(np.nanmax(window_nulls))


def _owned_logits(window_logits: dict[int, np.ndarray], plan: _Plan, tokens: int, size: int) -> np.ndarray:
    """(2, tokens) start and end logits of a passage from its read windows' (window -> (2, n) logits):
    each token's from the window that owns it (``owned_ranges``: overlaps split at their middle), -inf
    where no window was read (those tokens take no share of the softmaxes)."""
    read_windows = sorted(window_logits)
    starts = [plan.window_first[w] for w in read_windows]
    ends = [plan.window_end(w) for w in read_windows]
    owned = np.full((2, tokens), -np.inf, dtype=np.float32)
    for w, first, (lo, hi) in zip(read_windows, starts, owned_ranges(starts, size, tokens, ends)):
        owned[:, first + lo : first + hi] = window_logits[w][:, lo:hi]
    return owned


def _passage_scores(found: list[Answer], tokens: Tokens, owned: np.ndarray, null: float | None,
                    options: ReadingOptions) -> tuple[list[Answer], float | None]:
    """``found`` rescored and ranked under one start and one end softmax over the whole passage, and
    the probability of no answer: ``owned`` (2, tokens) holds each token's start and end logit from the
    window that owns it (``_owned_logits``), ``null`` the passage's null logit (None without the option)."""
    read_tokens = np.isfinite(owned[0])
    logits = SpanLogits(owned[0][read_tokens], owned[1][read_tokens], math.nan, null)
    start, end = owned[0].astype(np.float64) / options.temperature, owned[1].astype(np.float64) / options.temperature
    start_norm, end_norm = logits.log_normalizers(options.temperature)
    placed = []  # (answer, its first token, its last token in the passage)
    for answer in found:
        first, last = bisect.bisect_left(tokens.starts, answer.start), bisect.bisect_left(tokens.ends, answer.end)
        answer.score = math.exp(start[first] + end[last] - start_norm - end_norm)
        placed.append((answer, first, last))
    placed.sort(key=lambda item: (-item[0].score, item[0].start, item[0].end))
    placed = placed[: options.top_k]
    if options.with_logits and placed:
        best, first, last = placed[0]
        best.logits = replace(logits, best=float(owned[0][first] + owned[1][last]))
    return [answer for answer, _, _ in placed], logits.no_answer(options.temperature)


@dataclass
class _Found:
    """What reading rows found, by query index: every row's best answers (scored by their window's logits;
    a span two windows found, twice), each window read's (2, n) start and end logits, the null logit of
    each window of the passage (nan: not read), and the highest heat ratio of each passage token (the
    document strip)."""

    candidates: dict[int, list[Answer]] = field(default_factory=dict)
    logits: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    nulls: dict[int, np.ndarray] = field(default_factory=dict)
    strips: dict[int, np.ndarray] = field(default_factory=dict)

    def add(self, other: "_Found") -> None:
        """Take in what ``other`` found: another rank's share of the rows, or a later reading's."""
        for q, answers in other.candidates.items():
            self.candidates.setdefault(q, []).extend(answers)
        for q, windows in other.logits.items():  # every (query, window) is one row, read by one rank once
            self.logits.setdefault(q, {}).update(windows)
        for q, window_nulls in other.nulls.items():
            self.nulls[q] = np.fmax(self.nulls[q], window_nulls) if q in self.nulls else window_nulls
        for q, strip in other.strips.items():
            self.strips[q] = np.maximum(self.strips[q], strip) if q in self.strips else strip


def _row_answers(spans: Spans, row: int, context: str, window: Tokens, output: ReaderOutput) -> list[Answer]:
    """The valid spans of one batch row as answers with character offsets into ``context``, scored for
    now by their logit sum in this window (``_passage_scores`` rescores them over the whole passage)."""
    start_logits, end_logits = output.start_logits[row].tolist(), output.end_logits[row].tolist()
    return [Answer(context[window.starts[first] : window.ends[last]], window.starts[first], window.ends[last],
                   start_logits[first] + end_logits[last]) for first, last, _ in spans.of_row(row)]


class _RunTexts:
    """The texts one run has encoded for the network, with their contextual features, by window and by
    query index: each encoded once, all let go together when the run ends."""

    def __init__(self, batcher: Batcher, plan: _Plan, questions: list[Tokens], features: FeatureSource | None):
        self.batcher, self.plan, self.questions, self.features = batcher, plan, questions, features
        self.windows: dict[int, EncodedText] = {}
        self.queries: dict[int, EncodedText] = {}

    def batch(self, part: list[tuple[int, int]]) -> tuple[list[EncodedText], list[EncodedText]]:
        """The encoded windows and questions of ``part``'s (query, window) rows, encoding what is new."""
        new_windows = [w for w in dict.fromkeys(w for _, w in part) if w not in self.windows]
        new_queries = [q for q in dict.fromkeys(q for q, _ in part) if q not in self.queries]
        for w in new_windows:
            self.windows[w] = self.batcher.encode(self.plan.windows[w])
        for q in new_queries:
            self.queries[q] = self.batcher.encode(self.questions[q])
        if self.features is not None:  # features of this batch's new windows and questions, in one request each
            plan = self.plan
            spans = [(plan.window_passage[w], plan.window_first[w], len(plan.windows[w])) for w in new_windows]
            for w, features in zip(new_windows, self.features.windows(spans)):
                self.windows[w] = self.windows[w].with_context(features)
            for q, features in zip(new_queries, self.features.question_features(new_queries)):
                self.queries[q] = self.queries[q].with_context(features[: len(self.questions[q])])
        return [self.windows[w] for _, w in part], [self.queries[q] for q, _ in part]


class _Progress:
    """Rows read against rows to read, reported after each batch; the total shrinks as questions stop early."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None):
        self.done, self.total, self.report = 0, total, report

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.report is not None:
            self.report(self.done, self.total)


class _Reading:
    """One call of ``read``: the network, the plan and the questions, read run by run."""

    def __init__(self, net: ReaderNet, batcher: Batcher, passages: Passages, options: ReadingOptions, world: World,
                 features: FeatureSource | None, display: Display | None, progress: Callable[[int, int], None] | None):
        self.net, self.batcher, self.passages, self.options = net, batcher, passages, options
        self.world, self.features, self.display = world, features, display
        self.plan = _plan(passages, options)
        self.progress = _Progress(sum(map(len, self.plan.first)) + sum(map(len, self.plan.later)), progress)
        self.questions = [cut_question(q.question, options.max_question_tokens) for q in passages.queries]
        self.keep = options.top_k + CANDIDATE_MARGIN
        self.device = next(net.parameters()).device

    def run(self, run: list[int]) -> dict[int, tuple[list[Answer], float | None]]:
        """Read the queries of one run: their first windows, then the later ones of those not yet confident."""
        plan, options = self.plan, self.options
        texts = _RunTexts(self.batcher, plan, self.questions, self.features)  # let go when this returns
        found = self._read(plan.rows(run, plan.first), texts)
        results = {q: self._scored(found, q) for q in run if q in found.logits}
        unsure = [q for q in run if plan.later[q] and not (results[q][0] and results[q][0][0].score >= options.confident_score)]
        self.progress.total -= sum(len(plan.later[q]) for q in run) - sum(len(plan.later[q]) for q in unsure)
        if unsure:
            found.add(self._read(plan.rows(unsure, plan.later), texts))
            results.update({q: self._scored(found, q) for q in unsure})
        for q, strip in found.strips.items():
            self.display.document(self.passages.tokens[self.passages.queries[q].passage], strip, results[q][0])
        return results

    def _read(self, rows: list[tuple[int, int]], texts: _RunTexts) -> _Found:
        """What every rank found in its share of ``rows``, gathered."""
        batches = [rows[i : i + self.options.batch_size] for i in range(0, len(rows), self.options.batch_size)]
        mine = _Found()
        for part in self.world.shard(batches):
            self._read_batch(part, texts, mine)
            self.progress.advance(len(part))
        found = _Found()
        for part in self.world.gather(mine):
            found.add(part)
        return found

    def _forward(self, part: list[tuple[int, int]], texts: _RunTexts) -> tuple[ReaderOutput, torch.Tensor]:
        """The network's output for one batch of rows, on the CPU, and the batch's (B, P) passage mask."""
        batch = self.batcher.collate(*texts.batch(part), multiple=SHAPE_MULTIPLE).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.options.bfloat16):
            output = self.net(batch)
        output = ReaderOutput(**{f.name: None if getattr(output, f.name) is None else getattr(output, f.name).cpu()
                                 for f in fields(output)})
        return output, batch.passage_mask.cpu()

    def _read_batch(self, part: list[tuple[int, int]], texts: _RunTexts, found: _Found) -> None:
        """Read one batch of (query, window) rows into ``found``."""
        plan = self.plan
        output, mask = self._forward(part, texts)
        spans = best_spans(output.start_logits, output.end_logits, mask, self.options.max_answer_len, self.keep)
        logits = torch.stack([output.start_logits, output.end_logits], 1).float().numpy()  # (B, 2, P)
        for b, (q, w) in enumerate(part):
            passage, window = plan.window_passage[w], plan.windows[w]
            found.logits.setdefault(q, {})[w] = logits[b, :, : len(window)].copy()  # a copy: the batch is let go
            if output.null_logits is not None:
                window_nulls = found.nulls.setdefault(q, np.full(len(plan.passage_windows[passage]), np.nan))
                window_nulls[w - plan.passage_windows[passage].start] = float(output.null_logits[b])
            answers = _row_answers(spans, b, self.passages.texts[passage], window, output)
            found.candidates.setdefault(q, []).extend(answers)
            if self.display is not None and answers:
                self._show(found, q, w, output, b, answers)

    def _show(self, found: _Found, q: int, w: int, output: ReaderOutput, b: int, answers: list[Answer]) -> None:
        """Draw what is shown for the answers of row ``b`` (each may win once the passage is rescored; the
        row's top answer's heat also joins the document strip of a passage read in several windows)."""
        passage = self.plan.window_passage[w]
        strip = (self.display.document_strip and len(self.plan.passage_windows[passage]) > 1
                 and len(self.passages.documents(passage)) == 1)  # a collection's documents get no strip
        self.display.decorate(output, b, self.plan.windows[w], self.questions[q], answers)
        if strip and answers[0].heat is not None:
            tokens = self.passages.tokens[passage]
            document = found.strips.setdefault(q, np.zeros(len(tokens), dtype=np.float32))
            place = document[self.plan.window_first[w] : self.plan.window_first[w] + len(self.plan.windows[w])]
            np.maximum(place, answers[0].heat.ratio, out=place)

    def _scored(self, found: _Found, q: int) -> tuple[list[Answer], float | None]:
        """Query ``q``'s answers (copies, each span once) ranked over the windows read, and its probability of
        no answer."""
        tokens = self.passages.tokens[self.passages.queries[q].passage]
        null = passage_null_logit(found.nulls[q]) if q in found.nulls else None
        owned = _owned_logits(found.logits[q], self.plan, len(tokens), self.options.window_tokens)
        found_once = merge_ranked(found.candidates.get(q, []))  # a span two windows found: the higher-scored one
        return _passage_scores([replace(a) for a in found_once], tokens, owned, null, self.options)


@torch.inference_mode()
def read(net: ReaderNet, batcher: Batcher, passages: Passages, options: ReadingOptions = ReadingOptions(),
         world: World = World(), progress: Callable[[int, int], None] | None = None,
         features: FeatureSource | None = None, display: Display | None = None) -> list[Prediction]:
    """The ``options.top_k`` best answers to each of ``passages.queries``, in order; answers are slices
    of the passage texts. A model that reads contextual features needs ``features``; ``display`` draws
    what is shown beside the answers. ``progress(rows_done, rows_total)`` is called after each batch
    this rank reads. Every rank of ``world`` returns the whole result."""
    net.eval()
    reading = _Reading(net, batcher, passages, options, world, features, display, progress)
    results: dict[int, tuple[list[Answer], float | None]] = {}
    for run in reading.plan.runs(passages.queries):
        results.update(reading.run(run))
    return [Prediction(query.id, *results.get(q, ([], None))) for q, query in enumerate(passages.queries)]
