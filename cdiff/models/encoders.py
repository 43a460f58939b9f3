"""Condition encoders: caption tokens → text tokens, one-hot mask → mask tokens (REFERENCE.md §1).

Both are trained jointly with their UNet from scratch. The text encoder is a pre-LayerNorm
transformer (learned absolute positions, GELU feed-forward ×4, final LayerNorm) over the
tokenizer's ids; at paper scale 32 layers of width 640, 8 heads × 64, vocabulary 30,522, 77
tokens. The mask encoder is one Linear over the ``[19, r*r]`` one-hot planes: 19 tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from cdiff.config import TextEncoderConfig


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(width, inner, bias=False)
        self.to_k = nn.Linear(width, inner, bias=False)
        self.to_v = nn.Linear(width, inner, bias=False)
        self.to_out = nn.Linear(inner, width)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = (f(x).view(B, T, self.heads, -1).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        mask = None if pad is None else ~pad[:, None, None, :]  # (B, 1, 1, T): attend to real tokens
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, T, d)
        return self.to_out(y.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + FF(LN(x))."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width)
        self.attn = SelfAttention(cfg.width, cfg.heads, cfg.head_dim)
        self.norm2 = nn.LayerNorm(cfg.width)
        self.ff = nn.Sequential(
            nn.Linear(cfg.width, cfg.width * cfg.ff_mult),
            nn.GELU(),
            nn.Linear(cfg.width * cfg.ff_mult, cfg.width),
        )

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), pad)
        return x + self.ff(self.norm2(x))


class TextEncoder(nn.Module):
    """Token ids ``(B, T)`` → text tokens ``(B, T, width)``."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.vocab_size is None:
            raise ValueError("TextEncoderConfig.vocab_size must be set (the tokenizer's size)")
        self.token_emb = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_emb = nn.Embedding(cfg.max_length, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.to_logits = nn.Linear(cfg.width, cfg.vocab_size) if cfg.output_layer else None
        self.checkpointing = False  # recompute block activations in backward (saves memory)

    def forward(self, ids: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """``pad`` (B, T) bool marks padding keys to ignore; the release attends to all 77 (None)."""
        T = ids.shape[1]
        x = self.token_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))  # (B, T, C)
        for block in self.blocks:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, pad, use_reentrant=False)
            else:
                x = block(x, pad)
        return self.norm(x)


class MaskEncoder(nn.Module):
    """One-hot mask tokens ``(B, 19, r*r)`` → 19 mask tokens ``(B, 19, width)`` by one Linear."""

    def __init__(self, r: int = 32, width: int = 640):
        super().__init__()
        self.r = r
        self.linear = nn.Linear(r * r, width)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.linear(onehot)
