"""Collaborative diffusion (seed §A.1, REFERENCE.md §2): frozen uni-modal experts + dynamic diffusers.

For each modality m, at noisy latent x_t and timestep t:

    eps_m = Expert_m(x_t, t, c_m)            the frozen pre-trained uni-modal model
    I_m   = Diffuser_m(x_t, t, c_m)          influence logits, (B, 1, h, w)
    w_m   = softmax over m of I_m            per latent pixel
    eps   = sum_m w_m * eps_m                (w broadcast over the latent channels)

Everything here works for any number of modalities (a list), not two hard-coded branches. The
release's inference-only re-weighting (mask early, text late) is :func:`released_reweight`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from cdiff import config as cfg_mod
from cdiff import modalities
from cdiff.config import DiffuserConfig, UNetConfig
from cdiff.diffusion.predictors import combine, influence_weights
from cdiff.errors import InputError
from cdiff.models import store
from cdiff.models.build import build_unet
from cdiff.models.unimodal import UnimodalModel

WEIGHTS, CONFIG = "model.safetensors", "config.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def diffuser_unet_config(cfg: UNetConfig) -> UNetConfig:
    """The diffuser's UNet settings: one output channel, zero-initialised output layer, always."""
    return dataclasses.replace(cfg, out_channels=1, zero_out=True)


class DynamicDiffuser(nn.Module):
    """``I_m = D_m(x_t, t, cond_m)``: influence logits ``(B, 1, h, w)`` for one modality.

    ``cond`` is the expert's own encoding of the condition (``{"tokens": (B, n, C)}``, plus
    ``"concat"`` planes when the expert is a demo mask model with ``mask_concat``): the diffuser
    conditions exactly the way its expert does.
    """

    def __init__(self, cfg: UNetConfig, latent_channels: int, latent_size: int, extra_in: int = 0):
        super().__init__()
        self.concat = extra_in > 0
        self.unet = build_unet(diffuser_unet_config(cfg), latent_channels, latent_size, extra_in)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([x_t, cond["concat"].to(x_t.dtype)], dim=1) if self.concat else x_t
        return self.unet(x, t, encoder_hidden_states=cond["tokens"].to(x_t.dtype)).sample


def released_pair(mods: list[str]) -> tuple[int, int]:
    """Positions of the release's (early, late) pair in ``mods``: the modality it leans on in the first
    steps (the mask) and the one it leans on in the last (the text), by :attr:`Modality.released_role`."""
    roles = [modalities.get(m).released_role if m in modalities.names() else "" for m in mods]
    if sorted(roles) != ["early", "late"]:
        pair = sorted((m for m in modalities.names() if modalities.get(m).released_role), key=_role)
        raise InputError(
            f"--reweight released is defined for the modalities {' and '.join(pair)} only, not {', '.join(mods)}"
        )
    return roles.index("early"), roles.index("late")


def _role(m: str) -> str:
    return modalities.get(m).released_role


def check_released(mods: list[str]) -> None:
    """The release's re-weighting is defined for its two modalities only."""
    released_pair(mods)


def released_reweight(weights: torch.Tensor, modalities: list[str], t: torch.Tensor) -> torch.Tensor:
    """The release's inference-only re-weighting of (mask, text) influence (REFERENCE.md §2).

    s(t) = (cos((1 - t/1000) pi) + 1) / 2; m = s(t) w_mask; w_mask' = 2m / (1 + m);
    w_text' = (1 - m) / (1 + m). Early steps (t near 1000) lean on the mask model, the last
    ones on the text model; the two weights still sum to one.
    """
    i_mask, i_text = released_pair(modalities)
    s = (torch.cos((1 - t.to(weights.device).double() / 1000) * math.pi) + 1) / 2
    m = s.view(-1, 1, 1, 1).to(weights.dtype) * weights[i_mask]
    out = weights.clone()
    out[i_mask] = 2 * m / (1 + m)
    out[i_text] = (1 - m) / (1 + m)
    return out


class DiffuserSet(nn.Module):
    """The dynamic diffusers of a collaboration, one per modality, in ``modalities`` order."""

    def __init__(
        self,
        cfg: DiffuserConfig,
        latent_channels: int,
        latent_size: int,
        extra_in: dict[str, int] | None = None,
    ):
        super().__init__()
        self.cfg, self.modalities = cfg, list(cfg.modalities)
        if len(self.modalities) < 2 or len(set(self.modalities)) != len(self.modalities):
            raise InputError(
                f"diffuser.modalities must list two or more different modalities, got {self.modalities}"
            )
        extra_in = extra_in or {}
        self.nets = nn.ModuleDict(
            {
                m: DynamicDiffuser(cfg.unet, latent_channels, latent_size, extra_in.get(m, 0))
                for m in self.modalities
            }
        )

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conds: dict[str, dict]) -> list[torch.Tensor]:
        return [self.nets[m](x_t, t, conds[m]) for m in self.modalities]

    def parameter_counts(self) -> dict[str, int]:
        return {
            f"{m} dynamic diffuser": sum(p.numel() for p in net.parameters()) for m, net in self.nets.items()
        }


class Collaboration(nn.Module):
    """Frozen experts + dynamic diffusers: ``eps_hat, weights = collab(x_t, t, conds)``."""

    def __init__(
        self, experts: dict[str, UnimodalModel], diffusers: DiffuserSet | None, modalities: list[str]
    ):
        super().__init__()
        missing = [m for m in modalities if m not in experts]
        if missing:
            raise InputError(f"no expert for modality {', '.join(missing)}")
        self.modalities = list(modalities)
        self.experts = nn.ModuleDict({m: experts[m] for m in self.modalities})
        self.diffusers = diffusers
        for e in self.experts.values():
            e.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> Collaboration:
        super().train(mode)
        self.experts.eval()  # frozen experts stay in eval mode
        return self

    def encode(self, raw: dict[str, torch.Tensor]) -> dict[str, dict]:
        """Encode each modality's raw condition once (token ids or label maps)."""
        return {m: self.experts[m].encode(raw[m]) for m in self.modalities}

    def expert_eps(
        self, x_t: torch.Tensor, t: torch.Tensor, conds: dict[str, dict], only: list[str] | None = None
    ) -> list[torch.Tensor]:
        """Each expert's eps (float32), for ``only`` these modalities (default: all)."""
        out = []
        for m in only or self.modalities:
            expert = self.experts[m]
            dtype = next(expert.parameters()).dtype
            cond = {k: v.to(dtype) if v.is_floating_point() else v for k, v in conds[m].items()}
            out.append(expert(x_t.to(dtype), t, cond).float())
        return out

    def logits(self, x_t: torch.Tensor, t: torch.Tensor, conds: dict[str, dict]) -> list[torch.Tensor]:
        if self.diffusers is None:
            raise InputError("this collaboration has no dynamic diffusers; run `cdiff train-diffuser`")
        dtype = next(self.diffusers.parameters()).dtype
        conds_d = {m: {k: v.to(dtype) for k, v in c.items()} for m, c in conds.items()}
        return [lg.float() for lg in self.diffusers(x_t.to(dtype), t, conds_d)]

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, conds: dict[str, dict]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = influence_weights(self.logits(x_t, t, conds))
        return combine(self.expert_eps(x_t, t, conds), weights), weights


# ---- export / load ---------------------------------------------------------------------------


def diffuser_record(diffusers: DiffuserSet, meta: dict[str, Any]) -> dict[str, Any]:
    """What ``config.json`` says of a diffuser set: architecture (its modalities) and ``meta``."""
    return {"diffuser": cfg_mod.to_dict(diffusers.cfg), **meta}


def _build(record: dict[str, Any]) -> DiffuserSet:
    cfg = cfg_mod.build(DiffuserConfig, record["diffuser"])
    return DiffuserSet(cfg, record["latent_channels"], record["latent_size"], record.get("extra_in"))


store.register(
    store.Kind(
        "diffuser",
        "set of dynamic diffusers",
        build=_build,
        parts=lambda diffusers: {WEIGHTS: diffusers.nets},  # keys ``<modality>.unet.*``
        files=(WEIGHTS,),
        command=lambda folder: f"cdiff train-diffuser --run {folder.parent}",
    )
)


__all__ = [
    "DTYPES",
    "Collaboration",
    "DiffuserSet",
    "DynamicDiffuser",
    "combine",
    "diffuser_record",
    "influence_weights",
    "released_reweight",
]
