"""A small transformer over token sequences: ``transformer(input_shape, num_classes, ...)``.

Contract: inputs are int64 token ids of shape (N, L) (``input_shape == (L,)``), outputs are
(N, num_classes) logits read from the last position (the "=" token of the modular tables).
Every weight matrix is an ``nn.Linear`` (output rows first) or an ``nn.Embedding`` (one row per
token or position), so that ``landscape.directions``' filter normalization gives each output
unit, each token's embedding and each position's embedding its own group (see
docs/grokking.md); LayerNorm entries are 1-D and ignored with ``ignore="biasbn"``.
Attention is written out (softmax of scaled dot products) rather than fused, so that double
backward and forward-over-reverse Hessian products run through it on every device.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .errors import LandscapeError

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class Attention(nn.Module):
    """Multi-head self-attention with separate query, key, value and output projections."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width, bias=False)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width, bias=False)
        self.out = nn.Linear(width, width, bias=False)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        n, length, width = t.shape
        return t.view(n, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, h: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Attend from every position (or only the last one) to all positions."""
        q = self._split(self.query(h[:, -1:] if last_only else h))
        k, v = self._split(self.key(h)), self._split(self.value(h))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(q.shape[0], -1, h.shape[-1])
        return self.out(mixed)


class Block(nn.Module):
    """Residual attention and MLP sublayers, each optionally after a LayerNorm (pre-norm)."""

    def __init__(self, width: int, heads: int, mlp_width: int, activation: str,
                 layernorm: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(width) if layernorm else nn.Identity()
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width) if layernorm else nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(width, mlp_width), _ACTIVATIONS[activation](),
                                 nn.Linear(mlp_width, width))

    def forward(self, h: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``last_only``: only the last position's output (all the readout needs)."""
        h = (h[:, -1:] if last_only else h) + self.attn(self.norm1(h), last_only)
        return h + self.mlp(self.norm2(h))


class Transformer(nn.Module):
    """Token and position embeddings, ``depth`` blocks, a linear readout of the last position.

    The embeddings start at standard deviation ``1 / sqrt(width)`` (unit-norm token vectors
    on average); the linear layers keep PyTorch's initialization.
    """

    reads_tokens = True

    def __init__(self, length: int, vocab: int, num_classes: int, width: int, depth: int,
                 heads: int, mlp_width: int, activation: str, layernorm: bool):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Embedding(length, width)
        for table in (self.embed, self.position):
            nn.init.normal_(table.weight, std=width ** -0.5)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_width, activation, layernorm)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(width) if layernorm else nn.Identity()
        self.unembed = nn.Linear(width, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of token ids ``x`` (N, L)."""
        if x.is_floating_point() or x.is_complex():
            raise LandscapeError(f"the transformer reads int64 token ids; got {x.dtype} inputs "
                                 "(use a token dataset such as modular-add-97)")
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.embed(x) + self.position(positions)
        for i, block in enumerate(self.blocks):
            h = block(h, last_only=i == len(self.blocks) - 1)
        return self.unembed(self.norm(h[:, -1]))


def transformer(input_shape, num_classes, width: int = 128, depth: int = 1, heads: int = 4,
                mlp_width: int | None = None, activation: str = "relu",
                layernorm: bool = False, vocab: int | None = None) -> nn.Module:
    """A transformer for token sequences of length ``input_shape[0]``.

    Args:
        input_shape: ``(L,)``, the sequence length.
        num_classes: number of output classes.
        width: model width (d_model); a multiple of ``heads``.
        depth: number of blocks (at least 1).
        heads: attention heads.
        mlp_width: hidden units of each MLP (default ``4 * width``).
        activation: ``relu``, ``gelu`` or ``tanh`` in the MLPs.
        layernorm: pre-norm LayerNorms (off by default, as in the usual grokking models).
        vocab: number of token ids (default ``num_classes + 1``: the modular tables' ``p``
            operands plus "=").

    Returns:
        The Transformer.
    """
    if len(input_shape) != 1:
        raise LandscapeError(f"transformer needs token sequences (L,); this dataset's inputs "
                             f"have shape {tuple(input_shape)}")
    if depth < 1 or heads < 1 or width < 1 or width % heads:
        raise LandscapeError(f"transformer needs depth >= 1 and a width that is a positive "
                             f"multiple of heads (got width {width}, heads {heads}, depth "
                             f"{depth})")
    if activation not in _ACTIVATIONS:
        raise LandscapeError(f"unknown activation {activation!r}: use one of "
                             f"{', '.join(_ACTIVATIONS)}")
    vocab = num_classes + 1 if vocab is None else vocab
    mlp_width = 4 * width if mlp_width is None else mlp_width
    if vocab < 1 or mlp_width < 1:
        raise LandscapeError("transformer needs vocab >= 1 and mlp_width >= 1")
    return Transformer(int(input_shape[0]), vocab, num_classes, width, depth, heads,
                       mlp_width, activation, layernorm)


def check_input_kind(name: str, model: nn.Module, inputs: torch.Tensor) -> None:
    """Refuse a built-in model whose kind of input (int64 token ids or real values) is not the
    data's, before anything is trained or written (a user's model is trusted to know).

    Raises:
        LandscapeError: one line naming the model, the data's kind and what fits it.
    """
    tokens = not (inputs.is_floating_point() or inputs.is_complex())
    if tokens == getattr(model, "reads_tokens", False):
        return
    if tokens:
        raise LandscapeError(f"model {name!r} reads real-valued inputs, but this dataset holds "
                             "int64 token ids: use --model transformer")
    raise LandscapeError(f"model {name!r} reads int64 token ids, but this dataset holds "
                         f"{inputs.dtype} values: use a token dataset such as modular-add-97")
