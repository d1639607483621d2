"""(question, passage) pairs -> ranked answers: the one inference path, shared by ``Reader``, the
terminal, ``qa evaluate``, ``qa calibrate`` and training's dev evaluation.

Each passage is cut into windows of at most ``window_tokens`` tokens (a passage that fits is one
window) and each question to its first ``max_question_tokens`` tokens. Every (question, window)
pair is a row; rows sorted by window length are read in batches, each window and each question
encoded once. A question's answers from all its windows are merged, each character span once, and
scored under one start and one end softmax over the whole passage: each token's logit comes from
the window that owns it (overlaps split at their middle), so scores compare across windows.
A model with the no-answer option also gives each window a null logit; the passage's is their
log-mean-exp, it joins both softmaxes, and ``Prediction.no_answer`` is its probability.
Under ``torchrun`` the batches are dealt out to the ranks and the answers gathered: every row
sits in the same batch as in one process, so the results are the same bits (at the same number of
threads a process: float32 sums split over more threads can differ in the last bits).
"""
from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from qa.answers import Answer, AttentionMaps, DocumentHeat, Prediction, SpanLogits
from qa.batching import Batcher, EncodedText
from qa.decode import Spans, best_spans
from qa.distributed import World
from qa.errors import UserError
from qa.features import PreparedSet
from qa.heat import ANSWER_DEPENDENT_VIEWS, LEVEL_RATIOS, VIEWS, checked_level_ratios, evidence_of, heat_of
from qa.model import ReaderNet, ReaderOutput
from qa.retrieval import Ranker
from qa.tokenize import Tokens
from qa.windows import merge_ranked, owned_ranges, split_windows, window_starts


# Candidates kept per question beyond top_k while reading: they are ranked by their own window's
# logits, then rescored over the whole passage, where the order near a window's edge can change.
CANDIDATE_MARGIN = 5
# Queries are read in runs of consecutive passages of about this many first-reading rows; the windows
# and questions a run's unsure queries may read next stay encoded until the run's second reading is done.
RUN_ROWS = 4096


@dataclass(frozen=True)
class ReadingOptions:
    """How questions are read and how many answers come back."""

    top_k: int = 1  # answers per question
    max_answer_len: int = 15  # tokens
    batch_size: int = 64  # rows (question, window) per forward pass
    window_tokens: int = 200  # longest passage read in one piece (pipelines/README: shorter reader windows)
    window_stride: int = 150  # tokens between the starts of consecutive windows
    max_question_tokens: int = 64  # longer questions are cut
    max_windows: int = 0  # read only this many windows of a passage, the best by BM25 (0: all)
    first_windows: int = 0  # read this many best windows first, the rest only below confident_score (0: all at once)
    confident_score: float = 0.5  # a question whose best answer in its first windows scores this reads no more
    temperature: float = 1.0  # divides the span logits so that scores are calibrated
    bfloat16: bool = False  # run the network under bfloat16 autocast; span scores stay float32
    with_attention: bool = False  # each answer carries the attention maps of its window and its evidence
    with_logits: bool = False  # each answer carries its window's span logits
    heat_view: str | None = None  # each answer carries this view's heat (qa.heat.VIEWS)
    heat_levels: tuple[float, ...] = LEVEL_RATIOS  # the ratios to uniform its levels need (qa.heat)

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
        if self.heat_view is not None and self.heat_view not in VIEWS:
            raise UserError(f"unknown attention view {self.heat_view!r}; choose {', '.join(VIEWS)} or none")
        try:
            checked_level_ratios(self.heat_levels)
        except ValueError as error:
            raise UserError(str(error)) from None


class FeatureSource(Protocol):
    """Where ``read`` gets the contextual features (``qa.contextual``) of a model that reads them, batch
    by batch: precomputed (``ContextFeatures``) or encoded on demand (``qa.contextual.LiveFeatures``)."""

    def windows(self, spans: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """The (tokens, D) features of each (passage index, first token, tokens) window."""

    def question_features(self, queries: list[int]) -> list[np.ndarray]:
        """The (tokens, D) features of each query's question (before the question is cut)."""


@dataclass
class ContextFeatures:
    """Precomputed contextual features: ``passages[i]`` (tokens, D) for passage i, ``questions[q]``
    for query q (training's on-disk stores, or arrays)."""

    passages: Sequence[np.ndarray]
    questions: Sequence[np.ndarray]

    def windows(self, spans: list[tuple[int, int, int]]) -> list[np.ndarray]:
        return [self.passages[p][first : first + count] for p, first, count in spans]

    def question_features(self, queries: list[int]) -> list[np.ndarray]:
        return [self.questions[q] for q in queries]


@dataclass(frozen=True)
class Query:
    """One question about ``passages[passage]``; ``id`` names it in the results."""

    id: str
    question: Tokens
    passage: int


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
    passage_windows: dict[int, range]  # passage index -> indices of its windows, in passage order
    first: list[list[int]]  # query index -> the windows it reads first
    later: list[list[int]]  # query index -> the windows it reads if its first ones are not confident

    def rows(self, queries: list[int], picks: list[list[int]]) -> list[tuple[int, int]]:
        """(query, window) rows of ``queries``' picked windows (``first`` or ``later``), sorted by window
        length so that a batch pads little (stable: ties keep question order)."""
        rows = [(q, w) for q in queries for w in picks[q]]
        return sorted(rows, key=lambda row: len(self.windows[row[1]]))

    def runs(self, queries: list[Query]) -> list[list[int]]:
        """Query indices in runs of consecutive passages, each of about ``RUN_ROWS`` first-reading rows."""
        runs, rows = [[]], 0
        for q, query in enumerate(queries):
            if rows >= RUN_ROWS and query.passage != queries[q - 1].passage:
                runs, rows = runs + [[]], 0
            runs[-1].append(q)
            rows += len(self.first[q])
        return runs


def _plan(passage_tokens: list[Tokens], queries: list[Query], options: ReadingOptions) -> _Plan:
    windows: list[Tokens] = []
    owners: list[int] = []
    firsts: list[int] = []
    window_range: dict[int, range] = {}  # passage index -> indices of its windows
    for passage in dict.fromkeys(q.passage for q in queries):
        tokens = passage_tokens[passage]
        starts = window_starts(len(tokens), options.window_tokens, options.window_stride)
        window_range[passage] = range(len(windows), len(windows) + len(starts))
        windows += split_windows(tokens, options.window_tokens, options.window_stride)
        owners += [passage] * len(starts)
        firsts += starts
    staged = 0 < options.first_windows < (options.max_windows or math.inf)  # two readings, not one
    at_once = options.first_windows if staged else 0
    first, later = [], []
    rankers: dict[int, Ranker] = {}
    for query in queries:
        indices = list(window_range[query.passage])
        most = options.max_windows or len(indices)  # windows read at the most
        if len(indices) > (at_once or most):
            if query.passage not in rankers:
                rankers[query.passage] = Ranker([windows[w] for w in indices])
            indices = [indices[k] for k in rankers[query.passage].best(query.question, most)]  # best first
        cut = at_once or len(indices)
        first.append(sorted(indices[:cut]))
        later.append(sorted(indices[cut:]))
    return _Plan(windows, owners, firsts, window_range, first, later)


def _token_triples(tokens: Tokens) -> list[tuple[str, int, int]]:
    return list(zip(tokens.words, tokens.starts, tokens.ends))


def _attention_maps(output: ReaderOutput, row: int, window: Tokens, question: Tokens) -> AttentionMaps:
    p, q = len(window), len(question)
    self_weights = output.self_attention
    return AttentionMaps(
        _token_triples(window), _token_triples(question),
        output.general_attention[row, :p, :q].float().numpy().copy(),
        None if self_weights is None else self_weights[row, :p, :p].float().numpy().copy(),
        output.question_attention[row, :q].float().numpy().copy(),
        _passage_softmax(output.general_scores[row, :p, :q].float()).numpy().copy(),
    )


def _passage_softmax(scores: torch.Tensor) -> torch.Tensor:
    """(P, Q) general-attention scores -> (Q, P): each question word's softmax over the passage."""
    return scores.transpose(0, 1).softmax(-1)


def _row_answers(output: ReaderOutput, spans: Spans, row: int, context: str, window: Tokens, question: Tokens,
                 options: ReadingOptions) -> list[Answer]:
    """The valid spans of one row as answers with character offsets into ``context``, scored for
    now by their logit sum in this window (``read`` rescores them over the whole passage)."""
    found = spans.of_row(row)
    if not found:
        return []
    maps = _attention_maps(output, row, window, question) if options.with_attention or options.heat_view else None
    view = options.heat_view
    levels = options.heat_levels
    shared_heat = heat_of(maps, view, 0, 0, levels) if view and view not in ANSWER_DEPENDENT_VIEWS else None
    start_logits, end_logits = output.start_logits[row].tolist(), output.end_logits[row].tolist()
    answers = []
    for first, last, _ in found:
        begin, finish = window.starts[first], window.ends[last]
        answer = Answer(context[begin:finish], begin, finish, start_logits[first] + end_logits[last])
        if view:
            answer.heat = shared_heat or heat_of(maps, view, begin, finish, levels)
        if options.with_attention:
            answer.attention, answer.evidence = maps, evidence_of(maps, begin, finish)
        answers.append(answer)
    return answers


def passage_null_logit(window_nulls: np.ndarray) -> float:
    """The passage's null logit from its windows' (nan for a window not read): their log-mean-exp,
    so a passage read in many windows is not more or less likely to hold no answer for that alone."""
    read_nulls = window_nulls[~np.isnan(window_nulls)].astype(np.float64)
    return float(np.logaddexp.reduce(read_nulls) - math.log(len(read_nulls)))


def _owned_logits(window_logits: dict[int, np.ndarray], plan: _Plan, tokens: int, size: int) -> np.ndarray:
    """(2, tokens) start and end logits of a passage from its read windows' (window -> (2, n) logits):
    each token's from the window that owns it (``owned_ranges``: overlaps split at their middle), -inf
    where no window was read (those tokens take no share of the softmaxes)."""
    read_windows = sorted(window_logits)
    starts = [plan.window_first[w] for w in read_windows]
    owned = np.full((2, tokens), -np.inf, dtype=np.float32)
    for w, first, (lo, hi) in zip(read_windows, starts, owned_ranges(starts, size, tokens)):
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
    """What reading rows found, by query index: the best answers so far (scored by their window's
    logits), each window read's (2, n) start and end logits, the null logit of each window of the
    passage (nan: not read), and the highest heat ratio of each passage token (the attention display)."""

    best: dict[int, list[Answer]] = field(default_factory=dict)
    logits: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    nulls: dict[int, np.ndarray] = field(default_factory=dict)
    documents: dict[int, np.ndarray] = field(default_factory=dict)

    def add(self, other: "_Found", keep: int) -> None:
        """Take in what ``other`` found: another rank's share of the rows, or a later reading's."""
        for q, answers in other.best.items():
            self.best[q] = merge_ranked(self.best.get(q, []) + answers, keep)
        for q, windows in other.logits.items():  # every (query, window) is one row, read by one rank once
            self.logits.setdefault(q, {}).update(windows)
        for q, window_nulls in other.nulls.items():
            self.nulls[q] = np.fmax(self.nulls[q], window_nulls) if q in self.nulls else window_nulls
        for q, document in other.documents.items():
            self.documents[q] = np.maximum(self.documents[q], document) if q in self.documents else document


@dataclass
class _Encoded:
    """Texts encoded for the network (with their contextual features), by window and by query index;
    those in ``kept_windows`` and ``kept_questions`` outlive their last row (a second reading needs them)."""

    windows: dict[int, EncodedText] = field(default_factory=dict)
    questions: dict[int, EncodedText] = field(default_factory=dict)
    kept_windows: set[int] = field(default_factory=set)
    kept_questions: set[int] = field(default_factory=set)


def _read_rows(net: ReaderNet, batcher: Batcher, plan: _Plan, rows: list[tuple[int, int]], passages: list[str],
               passage_tokens: list[Tokens], questions: list[Tokens], options: ReadingOptions, world: World,
               context: FeatureSource | None, advance: Callable[[int], None], encoded: _Encoded) -> _Found:
    """Read this rank's share of ``rows`` in batches, each window and question encoded once (one already
    in ``encoded`` not at all) and let go after its last row unless ``encoded`` keeps it;
    ``advance(rows)`` after each batch."""
    device = next(net.parameters()).device
    keep = options.top_k + CANDIDATE_MARGIN
    found = _Found()
    encoded_windows, encoded_questions = encoded.windows, encoded.questions
    batches = world.shard([rows[i : i + options.batch_size] for i in range(0, len(rows), options.batch_size)])
    question_uses, window_uses = Counter(q for part in batches for q, _ in part), Counter(w for part in batches for _, w in part)
    for part in batches:
        new_windows = [w for w in dict.fromkeys(w for _, w in part) if w not in encoded_windows]
        new_questions = [q for q in dict.fromkeys(q for q, _ in part) if q not in encoded_questions]
        for w in new_windows:
            encoded_windows[w] = batcher.encode(plan.windows[w])
        for q in new_questions:
            encoded_questions[q] = batcher.encode(questions[q])
        if context is not None:  # features of this batch's new windows and questions, in one request each
            spans = [(plan.window_passage[w], plan.window_first[w], len(plan.windows[w])) for w in new_windows]
            for w, features in zip(new_windows, context.windows(spans)):
                encoded_windows[w] = encoded_windows[w].with_context(features)
            for q, features in zip(new_questions, context.question_features(new_questions)):
                encoded_questions[q] = encoded_questions[q].with_context(features[: len(questions[q])])
        batch = batcher.collate([encoded_windows[w] for _, w in part], [encoded_questions[q] for q, _ in part]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bfloat16):
            output = net(batch)
        output = ReaderOutput(**{f.name: None if getattr(output, f.name) is None else getattr(output, f.name).cpu()
                                 for f in fields(output)})
        spans = best_spans(output.start_logits, output.end_logits, batch.passage_mask.cpu(), options.max_answer_len, keep)
        logits = torch.stack([output.start_logits, output.end_logits], 1).float().numpy()  # (B, 2, P)
        for b, (q, w) in enumerate(part):
            passage, first, window = plan.window_passage[w], plan.window_first[w], plan.windows[w]
            found.logits.setdefault(q, {})[w] = logits[b, :, : len(window)].copy()  # a copy: the batch is let go
            if output.null_logits is not None:
                window_nulls = found.nulls.setdefault(q, np.full(len(plan.passage_windows[passage]), np.nan))
                window_nulls[w - plan.passage_windows[passage].start] = float(output.null_logits[b])
            answers = _row_answers(output, spans, b, passages[passage], window, questions[q], options)
            found.best[q] = merge_ranked(found.best.get(q, []) + answers, keep)
            if answers and answers[0].heat is not None and options.with_attention and len(plan.passage_windows[passage]) > 1:
                document = found.documents.setdefault(q, np.zeros(len(passage_tokens[passage]), dtype=np.float32))
                place = document[first : first + len(window)]
                np.maximum(place, answers[0].heat.ratio, out=place)
        for q, w in part:  # a text no row left to read is let go: memory follows the batches, not the file
            for uses, index, texts, kept in ((question_uses, q, encoded_questions, encoded.kept_questions),
                                             (window_uses, w, encoded_windows, encoded.kept_windows)):
                uses[index] -= 1
                if not uses[index] and index not in kept:
                    del texts[index]
        advance(len(part))
    return found


def _scored(found: _Found, q: int, plan: _Plan, tokens: Tokens, options: ReadingOptions) -> tuple[list[Answer], float | None]:
    """Query ``q``'s answers (copies) ranked over the windows read, and its probability of no answer."""
    null = passage_null_logit(found.nulls[q]) if q in found.nulls else None
    owned = _owned_logits(found.logits[q], plan, len(tokens), options.window_tokens)
    return _passage_scores([replace(a) for a in found.best.get(q, [])], tokens, owned, null, options)


@torch.inference_mode()
def read(net: ReaderNet, batcher: Batcher, passages: list[str], passage_tokens: list[Tokens],
         queries: list[Query], options: ReadingOptions = ReadingOptions(), world: World = World(),
         progress: Callable[[int, int], None] | None = None, context: FeatureSource | None = None) -> list[Prediction]:
    """The ``options.top_k`` best answers to each query, in the order of ``queries``.

    ``passages[i]`` is the text that ``passage_tokens[i]`` tokenizes; answers are slices of it.
    A model that reads contextual features needs ``context``. With ``options.first_windows``, a long
    passage is read in its first windows, and in the rest of its ``max_windows`` only for a query whose
    best answer there scores below ``options.confident_score``.
    ``progress(rows_done, rows_total)`` is called after each batch this rank reads. Every rank
    of ``world`` returns the whole result."""
    net.eval()
    plan = _plan(passage_tokens, queries, options)
    questions = [cut_question(q.question, options.max_question_tokens) for q in queries]
    keep = options.top_k + CANDIDATE_MARGIN
    count = {"done": 0, "total": sum(map(len, plan.first)) + sum(map(len, plan.later))}  # shrinks once known

    def advance(rows: int) -> None:
        count["done"] += rows
        if progress is not None:
            progress(count["done"], count["total"])

    def read_into(found: _Found, rows: list[tuple[int, int]], encoded: _Encoded) -> None:
        for part in world.gather(_read_rows(net, batcher, plan, rows, passages, passage_tokens, questions, options,
                                            world, context, advance, encoded)):
            found.add(part, keep)

    def scored(q: int) -> tuple[list[Answer], float | None]:
        return _scored(found, q, plan, passage_tokens[queries[q].passage], options)

    found, results = _Found(), {}
    for run in plan.runs(queries):
        # the windows and questions the run's second reading may need stay encoded until it is done
        encoded = _Encoded(kept_windows={w for q in run for w in plan.later[q]}, kept_questions={q for q in run if plan.later[q]})
        read_into(found, plan.rows(run, plan.first), encoded)
        results.update({q: scored(q) for q in run if q in found.logits})
        unsure = [q for q in run if plan.later[q] and not (results[q][0] and results[q][0][0].score >= options.confident_score)]
        count["total"] -= sum(len(plan.later[q]) for q in run) - sum(len(plan.later[q]) for q in unsure)
        if unsure:
            read_into(found, plan.rows(unsure, plan.later), replace(encoded, kept_windows=set(), kept_questions=set()))
            results.update({q: scored(q) for q in unsure})
    for q, document in found.documents.items():
        tokens = passage_tokens[queries[q].passage]
        heat = DocumentHeat(options.heat_view, tokens.starts, tokens.ends, document, options.heat_levels)
        for answer in results[q][0]:
            answer.document_heat = heat
    return [Prediction(query.id, *results.get(q, ([], None))) for q, query in enumerate(queries)]


def read_examples(net: ReaderNet, batcher: Batcher, data: PreparedSet, options: ReadingOptions = ReadingOptions(),
                  world: World = World(), progress: Callable[[int, int], None] | None = None,
                  context: FeatureSource | None = None) -> list[Prediction]:
    """``read`` over the questions of a prepared dataset (evaluation, calibration, training's dev
    set), one prediction per example in order; ``context`` indexes passages by context index and
    questions by example."""
    queries = [Query(e.id, e.question, e.context_index) for e in data.examples]
    return read(net, batcher, data.contexts, data.context_tokens, queries, options, world, progress, context)
