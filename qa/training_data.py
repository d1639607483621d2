"""Training data: the usable training questions, each text encoded once, and the group each
question is trained in during an epoch.

A group is the rows (passages) that share one start and one end softmax in the loss
(shared normalization, Clark & Gardner 2018; ``qa.model.span_loss``): the gold span must outscore
every span of every passage in its group, and with the no-answer option a learned null score
competes with all of them. Each epoch deals every question one kind of group, drawn with fixed
shares by a generator seeded with the run's seed and the epoch (so a resumed run deals the same):

- ``alone``: its own paragraph, the classic SQuAD example;
- ``pair``: its own paragraph and another paragraph of the same article;
- ``other``: another paragraph of its article alone; the target is no answer;
- ``removed``: its own paragraph without the sentences that hold the answer; the target is no answer;
- ``swapped``: its own paragraph, asked with a name or number of the question swapped for one of
  the same shape from elsewhere in the article (``swapped_question``); the target is no answer.

The other paragraphs are the two of the article most like the question under BM25 over content
lemmas (one drawn per epoch), never one that contains the answer text. A question that has no
such paragraph, or whose paragraph still holds the answer text once its sentences are removed,
or that has no name or number to swap, is dealt ``alone`` instead of the kind it cannot make.
Each question has one swapped form, drawn once per run (its contextual features are extracted once).

A question the data marks unanswerable (SQuAD 2.0: no gold answers) has no answer in any group it is
dealt: its target is always no answer, and a model without the no-answer option does not train on it.

A paragraph longer than the training set's window is trained in windows of that many tokens, every half
window, as the reader reads long passages: each epoch its question is dealt one window that holds the
whole answer (any window when it has none), in place of the whole paragraph, with its term frequencies
recounted for the window. Such a question cannot make a ``removed`` group, and an answer longer than
half a window, which no window may hold, is not trained on.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from qa.batching import Batch, Batcher, EncodedText, term_frequency
from qa.errors import UserError
from qa.features import Example, PreparedSet
from qa.contextual import ContextFeatures
from qa.retrieval import Ranker
from qa.tokenize import STOP_WORDS, Tokens, sentence_spans, tokenize_many
from qa.windows import window_starts

KINDS = ("alone", "pair", "other", "removed", "swapped")
DISTRACTORS = 2  # other paragraphs kept per question, one drawn each epoch
NO_ANSWER = -1  # the target of a group whose answer is not in it


@dataclass(frozen=True)
class GroupShares:
    """The share of questions dealt each kind of group per epoch; ``alone`` takes the rest."""

    pair: float = 0.0
    other: float = 0.0
    removed: float = 0.0
    swapped: float = 0.0

    def __post_init__(self):
        if min(self.pair, self.other, self.removed, self.swapped) < 0 or self.pair + self.negatives > 1:
            raise UserError("group shares must be non-negative and sum to at most 1")

    @property
    def negatives(self) -> float:
        """The share of groups whose target is no answer."""
        return self.other + self.removed + self.swapped

    def probabilities(self) -> list[float]:
        """The shares in the order of ``KINDS``."""
        return [1 - self.pair - self.negatives, self.pair, self.other, self.removed, self.swapped]


def answerable(example: Example) -> bool:
    """Whether the data gives the question a gold answer (SQuAD 2.0 marks the others with none)."""
    return bool(example.answers["text"])


def _words(tokens: Tokens, indices) -> str:
    """The lower-case words at ``indices``, space-separated and padded, for whole-word containment tests."""
    return " " + " ".join(tokens.words[i].lower() for i in indices) + " "


def article_members(articles: list[str]) -> dict[str, list[int]]:
    """Each article's paragraphs (context indices), from ``articles[c]``, the article of context ``c``."""
    members: dict[str, list[int]] = {}
    for context, article in enumerate(articles):
        members.setdefault(article, []).append(context)
    return members


def other_paragraphs(data: PreparedSet, articles: list[str], usable: list[int], max_tokens: int) -> list[list[int]]:
    """For each usable question, the context indices of up to ``DISTRACTORS`` other paragraphs of its
    article (``articles[c]`` names context ``c``'s), best BM25 match to the question first, leaving out
    those over ``max_tokens`` tokens and those that contain the answer's words."""
    members = article_members(articles)
    rankers = {article: Ranker([data.context_tokens[c] for c in contexts])
               for article, contexts in members.items() if len(contexts) > 1}
    found = []
    for i in usable:
        example = data.examples[i]
        article = articles[example.context_index]
        if article not in rankers:
            found.append([])
            continue
        own = data.context_tokens[example.context_index]
        answer = _words(own, range(example.answer_span[0], example.answer_span[1] + 1)) if answerable(example) else None
        ranked = [members[article][k] for k in rankers[article].best(example.question, len(members[article]))]
        kept = [c for c in ranked if c != example.context_index and len(data.context_tokens[c]) <= max_tokens
                and (answer is None or answer not in _words(data.context_tokens[c], range(len(data.context_tokens[c]))))]
        found.append(kept[:DISTRACTORS])
    return found


def answer_sentences(data: PreparedSet, usable: list[int]) -> list[tuple[int, int] | None]:
    """For each usable question, the token range ``[lo, hi)`` of the sentences that hold its answer,
    or None when the passage without them would still contain the answer's words (or be empty)."""
    sentences: dict[int, list[tuple[int, int]]] = {}
    ranges = []
    for i in usable:
        example = data.examples[i]
        tokens = data.context_tokens[example.context_index]
        if not answerable(example):  # no answer to remove: its own paragraph already answers nothing
            ranges.append(None)
            continue
        if example.context_index not in sentences:
            sentences[example.context_index] = sentence_spans(data.contexts[example.context_index])
        first, last = example.answer_span
        begin, end = tokens.starts[first], tokens.ends[last]
        held = [(s, e) for s, e in sentences[example.context_index] if s < end and e > begin]
        lo = next((k for k, start in enumerate(tokens.starts) if start >= held[0][0]), len(tokens)) if held else first
        hi = next((k for k, start in enumerate(tokens.starts) if start >= held[-1][1]), len(tokens)) if held else last + 1
        lo, hi = min(lo, first), max(hi, last + 1)
        rest = [k for k in range(len(tokens)) if not lo <= k < hi]
        answer = _words(tokens, range(first, last + 1))
        ranges.append((lo, hi) if rest and answer not in _words(tokens, rest) else None)
    return ranges


def _names_and_numbers(tokens: Tokens, skip_first: bool = False) -> list[tuple[str, int, int]]:
    """The (shape, first, last) token runs of ``tokens`` that name something: runs of capitalised
    words that are not function words (shape ``name N``, N words) and numbers (``year`` for four
    digits from 1000 to 2099, else ``number``). The first token of a question is left out."""
    runs, first = [], None
    for k, word in enumerate(tokens.words + [""]):
        capitalised = word[:1].isupper() and word.isalpha() and word.lower() not in STOP_WORDS and not (skip_first and k == 0)
        if capitalised and first is None:
            first = k
        elif not capitalised and first is not None:
            runs.append((f"name {k - first}", first, k - 1))
            first = None
        if word.isdigit():
            runs.append(("year" if len(word) == 4 and 1000 <= int(word) <= 2099 else "number", k, k))
    return runs


def article_names(texts: list[str], tokens: list[Tokens], articles: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per article (``articles[c]`` names text ``c``'s), the distinct names and numbers its paragraphs
    hold, by shape (``_names_and_numbers``), sorted: what a swapped question draws its replacement from."""
    pools: dict[str, dict[str, set[str]]] = {}
    for text, words, article in zip(texts, tokens, articles):
        pool = pools.setdefault(article, {})
        for shape, a, b in _names_and_numbers(words):
            pool.setdefault(shape, set()).add(text[words.starts[a]:words.ends[b]])
    return {article: {shape: sorted(names) for shape, names in pool.items()} for article, pool in pools.items()}


def swapped_question(question: str, tokens: Tokens, own: str, pool: dict[str, list[str]],
                     rng: np.random.Generator) -> str | None:
    """``question`` with one name or number that its paragraph ``own`` contains swapped for one of the
    same shape from its article's ``pool`` (``article_names``) that ``own`` does not contain: a question
    written against its paragraph that the paragraph no longer answers, SQuAD 2.0's commonest kind of
    unanswerable question. None when there is no such swap."""
    within = own.lower()
    candidates = [(shape, tokens.starts[a], tokens.ends[b]) for shape, a, b in _names_and_numbers(tokens, skip_first=True)]
    candidates = [(shape, a, b) for shape, a, b in candidates if question[a:b].lower() in within]
    replacements = {shape: [name for name in pool.get(shape, []) if name.lower() not in within]
                    for shape in {shape for shape, _, _ in candidates}}
    swaps = [(a, b, replacements[shape]) for shape, a, b in candidates if replacements[shape]]
    if not swaps:
        return None
    a, b, names = swaps[rng.integers(len(swaps))]
    return question[:a] + names[rng.integers(len(names))] + question[b:]


def swapped_questions(data: PreparedSet, questions: list[str], articles: list[str], seed: int) -> dict[int, tuple[str, Tokens]]:
    """One swapped form (``swapped_question``) of each question of ``data`` that has one, by example
    index, with its tokens; drawn by a generator seeded with ``seed``, so a resumed run makes the same."""
    pools = article_names(data.contexts, data.context_tokens, articles)
    rng = np.random.default_rng([seed, len(KINDS)])
    made = {}
    for i, example in enumerate(data.examples):
        context = example.context_index
        swapped = swapped_question(questions[i], example.question, data.contexts[context], pools[articles[context]], rng)
        if swapped is not None:
            made[i] = swapped
    return dict(zip(made, zip(made.values(), tokenize_many(list(made.values())))))


def subset(text: EncodedText, keep: np.ndarray) -> EncodedText:
    """``text``'s tokens at the indices ``keep``, in order, with term frequencies recounted over them, as if
    the text had been written so."""
    lower = text.lower[keep]
    return EncodedText(words=text.words[keep], tuned=text.tuned[keep], chars=text.chars[keep],
                       surface=text.surface[keep], lower=lower, lemma=text.lemma[keep], frequency=term_frequency(lower),
                       context=None if text.context is None else text.context[keep])


def without(text: EncodedText, lo: int, hi: int) -> EncodedText:
    """``text`` with tokens ``[lo, hi)`` removed."""
    return subset(text, np.r_[0:lo, hi:len(text)])


def training_windows(length: int, size: int, span: tuple[int, int] | None) -> list[int] | None:
    """The first tokens of the windows of ``size`` tokens (every half window) that a passage of ``length``
    tokens is trained in: [] when it fits whole, those holding all of the answer token ``span`` (every
    window without one), or None when no window holds the answer."""
    if length <= size:
        return []
    starts = window_starts(length, size, max(size // 2, 1))
    if span is not None:
        starts = [s for s in starts if s <= span[0] and span[1] < s + size]
    return starts or None


@dataclass
class TrainingSet:
    """The training questions, each text encoded once so that a step only pads arrays, and the groups of
    the epoch last dealt (``deal``)."""

    data: PreparedSet
    batcher: Batcher
    usable: list[int]  # indices into data.examples
    passages: list[EncodedText]
    questions: dict[int, EncodedText]
    shares: GroupShares
    others: list[list[int]]  # per usable question: other paragraphs of its article (context indices)
    removals: list[tuple[int, int] | None]  # per usable question: its answer's sentences as a token range
    swapped: dict[int, EncodedText]  # by example index: the question with a name or number swapped
    window: int  # longer passages are trained in windows of this many tokens
    windows: list[list[int]]  # per usable question: the first tokens of the windows it may be dealt, [] for all of its passage
    kinds: np.ndarray | None = None  # per usable question: index into KINDS, for the dealt epoch
    picks: np.ndarray | None = None  # per usable question: which of its other paragraphs, for the dealt epoch
    window_picks: np.ndarray | None = None  # per usable question: which of its windows, for the dealt epoch

    @classmethod
    def encode(cls, data: PreparedSet, batcher: Batcher, window: int, shares: GroupShares = GroupShares(),
               articles: list[str] | None = None, held_out: set[str] = frozenset(), console=None,
               context: ContextFeatures | None = None, swaps: dict[int, tuple[str, Tokens]] | None = None,
               swap_context: Sequence[np.ndarray] | None = None, no_answer: bool = False) -> "TrainingSet":
        """Keep the questions whose article is not ``held_out`` (and whose answer a training window holds:
        passages over ``window`` tokens are trained in windows), encode every text and find what the group
        ``shares`` need (``articles[c]`` names the article of context ``c``; ``swaps`` are the swapped
        questions, ``swapped_questions``), showing a status line on ``console`` meanwhile. With
        ``context`` every text carries its contextual features (``swap_context`` those of ``swaps``, in order).
        Unanswerable questions are trained (to no answer) only for a model with the ``no_answer`` option."""
        windows = {i: training_windows(len(data.context_tokens[e.context_index]), window,
                                       e.answer_span if answerable(e) else None)
                   for i, e in enumerate(data.examples)
                   if (articles is None or articles[e.context_index] not in held_out) and (no_answer or answerable(e))}
        usable = [i for i, starts in windows.items() if starts is not None]
        status = f"encoding {len(data.context_tokens)} passages and {len(usable)} questions"
        with console.status(status) if console else contextlib.nullcontext():
            passages = [batcher.encode(tokens) for tokens in data.context_tokens]
            questions = {i: batcher.encode(data.examples[i].question) for i in usable}
            if context is not None:
                passages = [p.with_context(context.passages[c]) for c, p in enumerate(passages)]
                questions = {i: q.with_context(context.questions[i]) for i, q in questions.items()}
        swapped: dict[int, EncodedText] = {}
        if shares.swapped:
            if swaps is None or (context is not None and swap_context is None):
                raise UserError("swapped groups need the swapped questions (and their contextual features)")
            kept = set(usable)
            for n, (i, (_, tokens)) in enumerate(swaps.items()):
                if i in kept:
                    encoded = batcher.encode(tokens)
                    swapped[i] = encoded if context is None else encoded.with_context(swap_context[n])
        others: list[list[int]] = [[] for _ in usable]
        if shares.pair or shares.other:
            if articles is None:
                raise UserError("pair and other groups need the article of every passage")
            with console.status("ranking other paragraphs") if console else contextlib.nullcontext():
                others = other_paragraphs(data, articles, usable, window)
        removals: list[tuple[int, int] | None] = [None] * len(usable)
        if shares.removed:
            with console.status("finding answer sentences") if console else contextlib.nullcontext():
                removals = [None if windows[i] else r for i, r in zip(usable, answer_sentences(data, usable))]
        return cls(data, batcher, usable, passages, questions, shares, others, removals, swapped, window,
                   [windows[i] for i in usable])

    def stats(self) -> dict:
        """How many questions can make each kind of group."""
        return {"questions": len(self.usable), "with_other_paragraphs": sum(bool(o) for o in self.others),
                "with_removable_sentences": sum(r is not None for r in self.removals),
                "with_swapped_questions": len(self.swapped), "in_windows": sum(bool(w) for w in self.windows)}

    def deal(self, seed: int, epoch: int) -> list[int]:
        """Deal every question its group for ``epoch``; returns each group's longest passage, in tokens
        (for length bucketing)."""
        rng = np.random.default_rng([seed, epoch])
        kinds = rng.choice(len(KINDS), size=len(self.usable), p=self.shares.probabilities())
        picks = rng.integers(0, DISTRACTORS, size=len(self.usable))
        has_other = np.array([bool(o) for o in self.others])
        has_removal = np.array([r is not None for r in self.removals])
        has_swap = np.array([i in self.swapped for i in self.usable])
        needs_other = (kinds == KINDS.index("pair")) | (kinds == KINDS.index("other"))
        cannot = (needs_other & ~has_other) | ((kinds == KINDS.index("removed")) & ~has_removal) \
            | ((kinds == KINDS.index("swapped")) & ~has_swap)
        kinds[cannot] = KINDS.index("alone")
        self.kinds, self.picks = kinds, picks
        self.window_picks = rng.integers(0, 2**31, size=len(self.usable))  # drawn last: the draws above do not move
        return [max(len(p) for p in self._rows(k)[0]) for k in range(len(self.usable))]

    def _rows(self, k: int) -> tuple[list[EncodedText], EncodedText, tuple[int, int]]:
        """The passages of usable question ``k``'s dealt group, its own paragraph (if any) first, the
        question asked of them, and the group's target: the answer's token span in slot 0, or ``NO_ANSWER``."""
        i = self.usable[k]
        example, question = self.data.examples[i], self.questions[i]
        own, shift = self._own(k)
        kind = KINDS[self.kinds[k]]
        target = (example.answer_span[0] - shift, example.answer_span[1] - shift) if answerable(example) \
            else (NO_ANSWER, NO_ANSWER)
        if kind == "alone":
            return [own], question, target
        if kind == "swapped":
            return [own], self.swapped[i], (NO_ANSWER, NO_ANSWER)
        if kind == "removed":
            return [without(own, *self.removals[k])], question, (NO_ANSWER, NO_ANSWER)
        other = self.passages[self.others[k][self.picks[k] % len(self.others[k])]]
        if kind == "pair":
            return [own, other], question, target
        return [other], question, (NO_ANSWER, NO_ANSWER)

    def _own(self, k: int) -> tuple[EncodedText, int]:
        """Usable question ``k``'s own passage, or its window dealt for the epoch, and the window's first token."""
        passage = self.passages[self.data.examples[self.usable[k]].context_index]
        starts = self.windows[k]
        if not starts:
            return passage, 0
        start = starts[self.window_picks[k] % len(starts)]
        return subset(passage, np.arange(start, start + self.window)), start

    def collate(self, positions: list[int]) -> Batch:
        """The batch of the dealt groups of the usable questions at ``positions``: one row per passage,
        with each row's group and slot, and each group's target (the answer sits in slot 0)."""
        if self.kinds is None:
            raise RuntimeError("deal an epoch before collating its groups")
        passages, questions, groups, slots, targets = [], [], [], [], []
        for g, k in enumerate(positions):
            rows, question, target = self._rows(k)
            for slot, passage in enumerate(rows):
                passages.append(passage)
                questions.append(question)
                groups.append(g)
                slots.append(slot)
            targets.append(target)
        batch = self.batcher.collate(passages, questions)
        # the target's slot is 0, so its flattened position is its token index, whatever the padded length
        batch.answer_starts = torch.tensor([s for s, _ in targets])
        batch.answer_ends = torch.tensor([e for _, e in targets])
        batch.row_group, batch.row_slot = torch.tensor(groups), torch.tensor(slots)
        return batch
