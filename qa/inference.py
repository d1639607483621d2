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
from dataclasses import dataclass, fields, replace
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
    temperature: float = 1.0  # divides the span logits so that scores are calibrated
    bfloat16: bool = False  # run the network under bfloat16 autocast; span scores stay float32
    with_attention: bool = False  # each answer carries the attention maps of its window and its evidence
    with_logits: bool = False  # each answer carries its window's span logits
    heat_view: str | None = None  # each answer carries this view's heat (qa.heat.VIEWS)
    heat_levels: tuple[float, ...] = LEVEL_RATIOS  # the ratios to uniform its levels need (qa.heat)

    def __post_init__(self):
        if min(self.top_k, self.max_answer_len, self.batch_size, self.max_question_tokens) < 1:
            raise UserError("top_k, max_answer_len, batch_size and max_question_tokens must be at least 1")
        if self.max_windows < 0:
            raise UserError("max_windows must be 0 (all) or more")
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
    """The windows of every asked-about passage and the rows, sorted by window length."""

    windows: list[Tokens]
    window_passage: list[int]  # passage index of each window
    window_first: list[int]  # index in its passage of each window's first token
    passage_windows: dict[int, range]  # passage index -> indices of its windows, in passage order
    owned: dict[tuple[int, int], tuple[int, int]]  # (query, window) -> [lo, hi) of the window's own tokens
    rows: list[tuple[int, int]]  # (query index, window index)


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
    rows = []
    owned: dict[tuple[int, int], tuple[int, int]] = {}
    rankers: dict[int, Ranker] = {}
    for q, query in enumerate(queries):
        indices = window_range[query.passage]
        if options.max_windows and len(indices) > options.max_windows:
            if query.passage not in rankers:
                rankers[query.passage] = Ranker([windows[w] for w in indices])
            indices = [indices[k] for k in sorted(rankers[query.passage].best(query.question, options.max_windows))]
        rows += [(q, w) for w in indices]
        starts = [firsts[w] for w in indices]
        ranges = owned_ranges(starts, options.window_tokens, len(passage_tokens[query.passage]))
        owned.update({(q, w): own for w, own in zip(indices, ranges)})
    rows.sort(key=lambda row: len(windows[row[1]]))  # stable: ties keep question order
    return _Plan(windows, owners, firsts, window_range, owned, rows)


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


def _owned_logits(pieces: list[tuple[int, np.ndarray]], tokens: int) -> np.ndarray:
    """(2, tokens) start and end logits of a passage from the (first token, (2, n) logits) pieces its
    read windows own; -inf where no window was read (those tokens take no share of the softmaxes)."""
    owned = np.full((2, tokens), -np.inf, dtype=np.float32)
    for first, logits in pieces:
        owned[:, first : first + logits.shape[1]] = logits
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


@torch.inference_mode()
def read(net: ReaderNet, batcher: Batcher, passages: list[str], passage_tokens: list[Tokens],
         queries: list[Query], options: ReadingOptions = ReadingOptions(), world: World = World(),
         progress: Callable[[int, int], None] | None = None, context: FeatureSource | None = None) -> list[Prediction]:
    """The ``options.top_k`` best answers to each query, in the order of ``queries``.

    ``passages[i]`` is the text that ``passage_tokens[i]`` tokenizes; answers are slices of it.
    A model that reads contextual features needs ``context``.
    ``progress(rows_done, rows_total)`` is called after each batch this rank reads. Every rank
    of ``world`` returns the whole result."""
    net.eval()
    device = next(net.parameters()).device
    plan = _plan(passage_tokens, queries, options)
    questions = [cut_question(q.question, options.max_question_tokens) for q in queries]
    encoded_windows: dict[int, EncodedText] = {}
    encoded_questions: dict[int, EncodedText] = {}
    best: dict[int, list[Answer]] = {}  # query index -> its best answers so far (memory: top_k each)
    documents: dict[int, np.ndarray] = {}  # query index -> max heat ratio per passage token (several windows)
    owned: dict[int, list[tuple[int, np.ndarray]]] = {}  # query index -> (first token, (2, n) logits) it owns, per window
    nulls: dict[int, np.ndarray] = {}  # query index -> null logit of each window of its passage (nan: not read)
    batches = world.shard([plan.rows[i : i + options.batch_size] for i in range(0, len(plan.rows), options.batch_size)])
    question_uses, window_uses = Counter(q for rows in batches for q, _ in rows), Counter(w for rows in batches for _, w in rows)
    done = 0
    for rows in batches:
        new_windows = [w for w in dict.fromkeys(w for _, w in rows) if w not in encoded_windows]
        new_questions = [q for q in dict.fromkeys(q for q, _ in rows) if q not in encoded_questions]
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
        batch = batcher.collate([encoded_windows[w] for _, w in rows], [encoded_questions[q] for q, _ in rows]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bfloat16):
            output = net(batch)
        output = ReaderOutput(**{f.name: None if getattr(output, f.name) is None else getattr(output, f.name).cpu()
                                 for f in fields(output)})
        spans = best_spans(output.start_logits, output.end_logits, batch.passage_mask.cpu(), options.max_answer_len,
                           options.top_k + CANDIDATE_MARGIN)
        logits = torch.stack([output.start_logits, output.end_logits], 1).float().numpy()  # (B, 2, P)
        for b, (q, w) in enumerate(rows):
            passage = plan.window_passage[w]
            lo, hi = plan.owned[q, w]
            first = plan.window_first[w]
            owned.setdefault(q, []).append((first + lo, logits[b, :, lo:hi].copy()))  # a copy: the batch is let go
            if output.null_logits is not None:
                window_nulls = nulls.setdefault(q, np.full(len(plan.passage_windows[passage]), np.nan))
                window_nulls[w - plan.passage_windows[passage].start] = float(output.null_logits[b])
            found = _row_answers(output, spans, b, passages[passage], plan.windows[w], questions[q], options)
            best[q] = merge_ranked(best.get(q, []) + found, options.top_k + CANDIDATE_MARGIN)
            if found and found[0].heat is not None and options.with_attention and len(plan.passage_windows[passage]) > 1:
                document = documents.setdefault(q, np.zeros(len(passage_tokens[passage]), dtype=np.float32))
                place = document[first : first + len(plan.windows[w])]
                np.maximum(place, found[0].heat.ratio, out=place)
        for q, w in rows:  # a text no row left to read is let go: memory follows the batches, not the file
            for uses, index, encoded in ((question_uses, q, encoded_questions), (window_uses, w, encoded_windows)):
                uses[index] -= 1
                if not uses[index]:
                    del encoded[index]
        done += len(rows)
        if progress is not None:
            progress(done, len(plan.rows))
    merged: dict[int, list[Answer]] = {}
    merged_documents: dict[int, np.ndarray] = {}
    merged_owned: dict[int, list[tuple[int, np.ndarray]]] = {}
    merged_nulls: dict[int, np.ndarray] = {}
    for part, part_documents, part_owned, part_nulls in world.gather((best, documents, owned, nulls)):
        for q, found in part.items():
            merged[q] = merge_ranked(merged.get(q, []) + found, options.top_k + CANDIDATE_MARGIN)
        for q, document in part_documents.items():
            merged_documents[q] = np.maximum(merged_documents.get(q, document), document)
        for q, pieces in part_owned.items():  # every token is owned by one row, so one rank holds its piece
            merged_owned.setdefault(q, []).extend(pieces)
        for q, window_nulls in part_nulls.items():  # likewise every window
            merged_nulls[q] = np.fmax(merged_nulls[q], window_nulls) if q in merged_nulls else window_nulls
    no_answer: dict[int, float | None] = {}
    for q in merged_owned:  # every query read, those without a valid span too: their no-answer probability holds
        null = passage_null_logit(merged_nulls[q]) if q in merged_nulls else None
        tokens = passage_tokens[queries[q].passage]
        merged[q], no_answer[q] = _passage_scores(merged.get(q, []), tokens, _owned_logits(merged_owned[q], len(tokens)),
                                                  null, options)
    for q, document in merged_documents.items():
        tokens = passage_tokens[queries[q].passage]
        heat = DocumentHeat(options.heat_view, tokens.starts, tokens.ends, document, options.heat_levels)
        for answer in merged.get(q, []):
            answer.document_heat = heat
    return [Prediction(query.id, merged.get(q, []), no_answer.get(q)) for q, query in enumerate(queries)]


def read_examples(net: ReaderNet, batcher: Batcher, data: PreparedSet, options: ReadingOptions = ReadingOptions(),
                  world: World = World(), progress: Callable[[int, int], None] | None = None,
                  context: FeatureSource | None = None) -> list[Prediction]:
    """``read`` over the questions of a prepared dataset (evaluation, calibration, training's dev
    set), one prediction per example in order; ``context`` indexes passages by context index and
    questions by example."""
    queries = [Query(e.id, e.question, e.context_index) for e in data.examples]
    return read(net, batcher, data.contexts, data.context_tokens, queries, options, world, progress, context)
