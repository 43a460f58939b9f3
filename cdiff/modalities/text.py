"""The ``text`` modality: a caption (the paper: CelebA-Dialog's beard and age sentences).

Raw condition: token ids ``(77,)`` from the tokenizer saved with the dataset (and copied beside
the trained text model). Encoder: a pre-LN transformer → text tokens ``(77, C)`` for
cross-attention. Null condition: the empty caption. Captions with words the tokenizer does not
know as whole words, or longer than 77 tokens, get a note.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from cdiff import config as cfg_mod
from cdiff.data.tokenizer import caption_notes, load_tokenizer
from cdiff.data.tokenizer import encode as tokenize
from cdiff.errors import InputError
from cdiff.modalities import ConditionEncoder, Context, Modality, register
from cdiff.models.encoders import TextEncoder

TOKENIZER = "tokenizer"  # the tokenizer's folder beside a trained text model (and in a prepared dataset)


class TextCondition(TextEncoder, ConditionEncoder):
    """Token ids ``(B, T)`` → ``{"tokens": (B, T, C)}``."""

    def encode(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"tokens": self(raw)}


class Text(Modality):
    name = "text"
    option = "--text"
    option_help = "A caption (repeatable)."
    target_option = "--target-text"
    target_help = "The caption to edit toward."
    describes = "a caption"
    has_vocabulary = True
    released_role = "late"  # the release leans on it in the last steps

    def build_encoder(self, cfg: Any, latent_size: int, vocab_size: int | None = None) -> TextCondition:
        width = cfg.unet.cross_attention_dim
        if cfg.text_encoder.width != width:
            raise InputError(
                f"unimodal.text_encoder.width ({cfg.text_encoder.width}) must equal "
                f"unimodal.unet.cross_attention_dim ({width})"
            )
        enc_cfg = cfg_mod.build(cfg_mod.TextEncoderConfig, cfg_mod.to_dict(cfg.text_encoder))
        enc_cfg.vocab_size = vocab_size or enc_cfg.vocab_size
        return TextCondition(enc_cfg)

    def vocab_size(self, data: Any) -> int:
        return len(data.tokenizer())

    def parameter_notes(self, cfg: Any, vocab: int) -> dict[str, int]:
        """The release's unused width → vocabulary logits layer, when it is not built."""
        if cfg.text_encoder.output_layer:
            return {}
        return {"release's unused text output layer (not built)": cfg.text_encoder.width * vocab + vocab}

    def export_assets(self, data: Any, folder: Path) -> None:
        """The tokenizer goes beside the trained model: generate and edit read captions with it."""
        shutil.copytree(data.root / TOKENIZER, folder / TOKENIZER, dirs_exist_ok=True)

    def _tokenizer(self, ctx: Context):
        if "tokenizer" not in ctx.cache:
            if ctx.folder is not None:
                ctx.cache["tokenizer"] = load_tokenizer(ctx.folder / TOKENIZER)
            else:
                ctx.cache["tokenizer"] = ctx.data.tokenizer()
        return ctx.cache["tokenizer"]

    @staticmethod
    def _max_length(ctx: Context) -> int:
        return ctx.meta["unimodal"]["text_encoder"]["max_length"]

    def from_dataset(self, data: Any, ids: list[str], ctx: Context) -> torch.Tensor:
        records = data.records()
        return tokenize(self._tokenizer(ctx), [records[i]["caption"] for i in ids], self._max_length(ctx))

    def dataset_value(self, data: Any, sample_id: str) -> str:
        return data.records()[sample_id]["caption"]

    def read(self, values: list[Any], ctx: Context, notes: list[str]) -> torch.Tensor:
        bad = [v for v in values if not isinstance(v, str)]
        if bad:
            raise InputError(f"a caption must be a string, got {type(bad[0]).__name__} {bad[0]!r:.40}")
        tok, max_length = self._tokenizer(ctx), self._max_length(ctx)
        notes += [n for n in caption_notes(tok, list(values), max_length) if n not in notes]
        return tokenize(tok, list(values), max_length)

    def null(self, like: torch.Tensor, ctx: Context) -> torch.Tensor:
        return tokenize(self._tokenizer(ctx), [""], self._max_length(ctx))[0].to(like.device)

    def caption(self, value: Any) -> str:
        return str(value)

    # the attribute classifier against what the caption states (gender, beard, age, ...)
    columns = {"text_accuracy": ("text acc.", "text")}
    headline = "text_accuracy"
    judged_by = "text accuracy: the attribute classifier against what the caption states"

    def truth(self, data: Any, ids: list[str], judges: Any) -> torch.Tensor:
        from cdiff.data.attributes import stated

        records, source = data.records(), data.manifest["config"]["data"]["source"]
        names = list(judges.spec.attributes)
        return torch.tensor([[stated(records[i], source)[a] for a in names] for i in ids], dtype=torch.long)

    def judge(self, judges: Any, images: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
        from cdiff.models.evaluator import attribute_scores

        return attribute_scores(judges.classifier, images, truth)


TEXT = register(Text())
