"""A BERT-family encoder's forward pass in plain torch, read from a model folder (``config.json`` and
``model.safetensors``), with its ``tokenizer.json`` through the ``tokenizers`` library.

Why not ``transformers``: the contextual reader loads its frozen encoder on every ``qa ask``, and
importing a ``transformers`` 5.x model class pulls in ``torch.distributed.tensor``, ``torch._dynamo``
and scipy, about 4 s of a 9 s cold start on this project's 2-core machine. Inference needs only
the encoder's hidden states, which this module computes from the same weights;
``tests/test_contextual.py`` checks them against ``transformers``' ``BertModel``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from qa.errors import UserError


def _linear_norm(hidden_in: int, hidden: int, eps: float) -> nn.ModuleDict:
    """A projection followed by a residual LayerNorm, under BERT's names (``dense``, ``LayerNorm``)."""
    return nn.ModuleDict({"dense": nn.Linear(hidden_in, hidden), "LayerNorm": nn.LayerNorm(hidden, eps=eps)})


class _Layer(nn.Module):
    """One post-LayerNorm transformer layer: multi-head self-attention, then the GELU feed-forward."""

    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.heads = heads
        self.attention = nn.ModuleDict({
            "self": nn.ModuleDict({name: nn.Linear(hidden, hidden) for name in ("query", "key", "value")}),
            "output": _linear_norm(hidden, hidden, eps),
        })
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(hidden, inner)})
        self.output = _linear_norm(inner, hidden, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H) states and a (B, 1, 1, T) mask of real keys -> (B, T, H)."""
        batch, length, hidden = x.shape
        projections = self.attention["self"]

        def split(name: str) -> torch.Tensor:  # (B, heads, T, H / heads)
            return projections[name](x).view(batch, length, self.heads, -1).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(split("query"), split("key"), split("value"), attn_mask=mask)
        mixed = mixed.transpose(1, 2).reshape(batch, length, hidden)
        out = self.attention["output"]
        x = out["LayerNorm"](x + out["dense"](mixed))
        inner = F.gelu(self.intermediate["dense"](x))
        return self.output["LayerNorm"](x + self.output["dense"](inner))


def cast_linears(net: nn.Module, dtype: torch.dtype) -> None:
    """``net``'s linear layers' weights in ``dtype`` ahead of time. Under autocast to ``dtype`` a frozen weight
    is cast again on every call (autocast caches only the casts of weights that train): 1.3 of a
    question's 7.8 ms of MiniLM in bfloat16 on the EPYC. The same values either way; embeddings and
    LayerNorms keep their precision, as autocast keeps them."""
    for module in net.modules():
        if isinstance(module, nn.Linear):
            module.to(dtype)


class BertEncoder(nn.Module):
    """BERT's embeddings and encoder layers (no pooler), parameters named as in the checkpoint."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-12)
        self.embeddings = nn.ModuleDict({
            "word_embeddings": nn.Embedding(config["vocab_size"], hidden),
            "position_embeddings": nn.Embedding(config["max_position_embeddings"], hidden),
            "token_type_embeddings": nn.Embedding(config.get("type_vocab_size", 2), hidden),
            "LayerNorm": nn.LayerNorm(hidden, eps=eps),
        })
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"]))})
        self.hidden_size = hidden
        self.max_positions = config["max_position_embeddings"]

    @property
    def depth(self) -> int:
        """The number of transformer layers."""
        return len(self.encoder["layer"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: tuple[int, ...] = (-1,)) -> torch.Tensor:
        """(B, T) wordpiece ids and a (B, T) 1/0 mask of real pieces -> (B, T, H x len(layers)): the hidden
        states after each of ``layers`` side by side, counted as in ``transformers``' ``hidden_states``
        (0 the embeddings, 1..depth the layers, -1 the last). Layers above the deepest chosen are not run.
        Every row needs at least one real piece (the callers always send [CLS] and [SEP])."""
        chosen = [layer % (self.depth + 1) for layer in layers]
        embed = self.embeddings
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (embed["word_embeddings"](input_ids) + embed["position_embeddings"](positions)
             + embed["token_type_embeddings"].weight[0])
        x = embed["LayerNorm"](x)
        mask = attention_mask.bool()[:, None, None, :]
        kept = {0: x} if 0 in chosen else {}  # only the chosen states stay alive, not every layer's
        for depth, layer in enumerate(self.encoder["layer"][: max(chosen)], start=1):
            x = layer(x, mask)
            if depth in chosen:
                kept[depth] = x
        return torch.cat([kept[k] for k in chosen], dim=-1)

    @classmethod
    def load(cls, folder: Path) -> "BertEncoder":
        """The encoder in ``folder``: a BERT ``config.json`` (absolute positions, exact GELU) and its
        ``model.safetensors`` (keys with or without a ``bert.`` prefix; the pooler and heads are ignored)."""
        from safetensors.torch import load_file

        config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        if not config_path.is_file() or not weights_path.is_file():
            raise UserError(f"{folder}: a contextual encoder folder needs config.json and model.safetensors")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UserError(f"{config_path}: not a readable JSON model config ({error})") from None
        if not isinstance(config, dict):
            raise UserError(f"{config_path}: not a model config (a JSON object)")
        shape = (config.get("model_type"), config.get("hidden_act", "gelu"), config.get("position_embedding_type", "absolute"))
        if shape != ("bert", "gelu", "absolute"):
            raise UserError(f"{folder}: the contextual encoder must be a BERT model with GELU and absolute positions "
                            f"(model_type, hidden_act, position_embedding_type are {shape})")
        try:
            net = cls(config)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise UserError(f"{config_path}: an incomplete BERT config ({type(error).__name__}: {error})") from None
        try:
            weights = {key.removeprefix("bert."): value for key, value in load_file(weights_path).items()}
        except Exception as error:  # safetensors raises its own error type for a damaged or LFS-pointer file
            raise UserError(f"{weights_path}: not a readable safetensors file ({error})") from None
        wanted = net.state_dict().keys()
        missing = [key for key in wanted if key not in weights]
        if missing:
            raise UserError(f"{weights_path}: not the weights of this BERT config (missing {missing[0]})")
        try:
            net.load_state_dict({key: weights[key] for key in wanted})
        except RuntimeError as error:
            raise UserError(f"{weights_path}: weights of another shape than config.json says ({error})") from None
        return net.eval().requires_grad_(False)
