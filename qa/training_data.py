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
- ``removed``: its own paragraph without the sentences that hold the answer; the target is no answer.

The other paragraphs are the two of the article most like the question under BM25 over content
lemmas (one drawn per epoch), never one that contains the answer text. A question that has no
such paragraph, or whose paragraph still holds the answer text once its sentences are removed,
is dealt ``alone`` instead of the kind it cannot make.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from qa.batching import Batch, Batcher, EncodedText
from qa.errors import UserError
from qa.features import PreparedSet
from qa.inference import ContextFeatures
from qa.retrieval import Ranker
from qa.tokenize import STOP_WORDS, Tokens, sentence_spans

KINDS = ("alone", "pair", "other", "removed")
DISTRACTORS = 2  # other paragraphs kept per question, one drawn each epoch
NO_ANSWER = -1  # the target of a group whose answer is not in it


@dataclass(frozen=True)
class GroupShares:
    """The share of questions dealt each kind of group per epoch; ``alone`` takes the rest."""

    pair: float = 0.0
    other: float = 0.0
    removed: float = 0.0

    def __post_init__(self):
        if min(self.pair, self.other, self.removed) < 0 or self.pair + self.other + self.removed > 1:
            raise UserError("group shares must be non-negative and sum to at most 1")

    @property
    def negatives(self) -> float:
        """The share of groups whose target is no answer."""
        return self.other + self.removed

    def probabilities(self) -> list[float]:
        """The shares in the order of ``KINDS``."""
        return [1 - self.pair - self.other - self.removed, self.pair, self.other, self.removed]


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
        answer = _words(own, range(example.answer_span[0], example.answer_span[1] + 1))
        ranked = [members[article][k] for k in rankers[article].best(example.question, len(members[article]))]
        kept = [c for c in ranked if c != example.context_index and len(data.context_tokens[c]) <= max_tokens
                and answer not in _words(data.context_tokens[c], range(len(data.context_tokens[c])))]
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


def swapped_question(question: str, tokens: Tokens, own: str, others: list[tuple[str, Tokens]],
                     rng: np.random.Generator) -> str | None:
    """``question`` with one name or number that its paragraph ``own`` contains swapped for one of the
    same shape from ``others`` (the article's other paragraphs, with their tokens) that ``own`` does
    not contain: a question written against its paragraph that the paragraph no longer answers,
    SQuAD 2.0's commonest kind of unanswerable question. None when there is no such swap."""
    within = own.lower()
    candidates = [(shape, tokens.starts[a], tokens.ends[b]) for shape, a, b in _names_and_numbers(tokens, skip_first=True)]
    candidates = [(shape, a, b) for shape, a, b in candidates if question[a:b].lower() in within]
    pool: dict[str, set[str]] = {}
    for text, other in others:
        for shape, a, b in _names_and_numbers(other):
            found = text[other.starts[a]:other.ends[b]]
            if found.lower() not in within:
                pool.setdefault(shape, set()).add(found)
    swaps = [(a, b, sorted(pool[shape])) for shape, a, b in candidates if pool.get(shape)]
    if not swaps:
        return None
    a, b, replacements = swaps[rng.integers(len(swaps))]
    return question[:a] + replacements[rng.integers(len(replacements))] + question[b:]


def without(text: EncodedText, lo: int, hi: int) -> EncodedText:
    """``text`` with tokens ``[lo, hi)`` removed and its term frequencies recounted."""
    keep = np.r_[0:lo, hi:len(text)]
    lower = text.lower[keep]
    _, inverse, counts = np.unique(lower, return_inverse=True, return_counts=True)
    return EncodedText(words=text.words[keep], tuned=text.tuned[keep], chars=text.chars[keep],
                       surface=text.surface[keep], lower=lower, lemma=text.lemma[keep],
                       frequency=(counts[inverse.reshape(-1)] / max(len(keep), 1)).astype(np.float32),
                       context=None if text.context is None else text.context[keep])


@dataclass
class TrainingSet:
    """The training questions whose passage fits, each text encoded once so that a step only pads
    arrays, and the groups of the epoch last dealt (``deal``)."""

    data: PreparedSet
    batcher: Batcher
    usable: list[int]  # indices into data.examples
    passages: list[EncodedText]
    questions: dict[int, EncodedText]
    shares: GroupShares
    others: list[list[int]]  # per usable question: other paragraphs of its article (context indices)
    removals: list[tuple[int, int] | None]  # per usable question: its answer's sentences as a token range
    kinds: np.ndarray | None = None  # per usable question: index into KINDS, for the dealt epoch
    picks: np.ndarray | None = None  # per usable question: which of its other paragraphs, for the dealt epoch

    @classmethod
    def encode(cls, data: PreparedSet, batcher: Batcher, max_passage_tokens: int, shares: GroupShares = GroupShares(),
               articles: list[str] | None = None, held_out: set[str] = frozenset(), console=None,
               context: ContextFeatures | None = None) -> "TrainingSet":
        """Keep the questions whose passage has at most ``max_passage_tokens`` tokens (longer ones are rare
        in SQuAD) and whose article is not ``held_out``, encode every text and find what the group
        ``shares`` need (``articles[c]`` names the article of context ``c``), showing a status line on
        ``console`` meanwhile. With ``context`` every text carries its contextual features."""
        usable = [i for i, e in enumerate(data.examples)
                  if len(data.context_tokens[e.context_index]) <= max_passage_tokens
                  and (articles is None or articles[e.context_index] not in held_out)]
        status = f"encoding {len(data.context_tokens)} passages and {len(usable)} questions"
        with console.status(status) if console else contextlib.nullcontext():
            passages = [batcher.encode(tokens) for tokens in data.context_tokens]
            questions = {i: batcher.encode(data.examples[i].question) for i in usable}
            if context is not None:
                passages = [p.with_context(context.passages[c]) for c, p in enumerate(passages)]
                questions = {i: q.with_context(context.questions[i]) for i, q in questions.items()}
        others: list[list[int]] = [[] for _ in usable]
        if shares.pair or shares.other:
            if articles is None:
                raise UserError("pair and other groups need the article of every passage")
            with console.status("ranking other paragraphs") if console else contextlib.nullcontext():
                others = other_paragraphs(data, articles, usable, max_passage_tokens)
        removals: list[tuple[int, int] | None] = [None] * len(usable)
        if shares.removed:
            with console.status("finding answer sentences") if console else contextlib.nullcontext():
                removals = answer_sentences(data, usable)
        return cls(data, batcher, usable, passages, questions, shares, others, removals)

    def stats(self) -> dict:
        """How many questions can make each kind of group."""
        return {"questions": len(self.usable), "with_other_paragraphs": sum(bool(o) for o in self.others),
                "with_removable_sentences": sum(r is not None for r in self.removals)}

    def deal(self, seed: int, epoch: int) -> list[int]:
        """Deal every question its group for ``epoch``; returns each group's longest passage, in tokens
        (for length bucketing)."""
        rng = np.random.default_rng([seed, epoch])
        kinds = rng.choice(len(KINDS), size=len(self.usable), p=self.shares.probabilities())
        picks = rng.integers(0, DISTRACTORS, size=len(self.usable))
        has_other = np.array([bool(o) for o in self.others])
        has_removal = np.array([r is not None for r in self.removals])
        needs_other = (kinds == KINDS.index("pair")) | (kinds == KINDS.index("other"))
        kinds[(needs_other & ~has_other) | ((kinds == KINDS.index("removed")) & ~has_removal)] = KINDS.index("alone")
        self.kinds, self.picks = kinds, picks
        return [max(len(p) for p in self._rows(k)[0]) for k in range(len(self.usable))]

    def _rows(self, k: int) -> tuple[list[EncodedText], tuple[int, int]]:
        """The passages of usable question ``k``'s dealt group, its own paragraph (if any) first, and the
        group's target: the answer's token span in slot 0, or ``NO_ANSWER``."""
        example = self.data.examples[self.usable[k]]
        own = self.passages[example.context_index]
        kind = KINDS[self.kinds[k]]
        if kind == "alone":
            return [own], example.answer_span
        other = self.passages[self.others[k][self.picks[k] % len(self.others[k])]] if self.others[k] else None
        if kind == "pair":
            return [own, other], example.answer_span
        if kind == "other":
            return [other], (NO_ANSWER, NO_ANSWER)
        return [without(own, *self.removals[k])], (NO_ANSWER, NO_ANSWER)

    def collate(self, positions: list[int]) -> Batch:
        """The batch of the dealt groups of the usable questions at ``positions``: one row per passage,
        with each row's group and slot, and each group's target (the answer sits in slot 0)."""
        if self.kinds is None:
            raise RuntimeError("deal an epoch before collating its groups")
        passages, questions, groups, slots, targets = [], [], [], [], []
        for g, k in enumerate(positions):
            rows, target = self._rows(k)
            question = self.questions[self.usable[k]]
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
