"""Noise predictors: what the sampler calls, ``eps = predictor(x_t, t, enc)`` with ``enc = predictor.encode(raw)``.

One predictor serves every method: uni-modal sampling is a collaboration of one expert with
weight 1; ``composable`` weighs the experts' predictions with fixed weights; ``collaborative``
with the dynamic diffusers' influence maps (seed §A.1). Classifier-free guidance is written once
(:func:`guided`), running the conditional and the null condition in one batched forward.

The collaboration is duck-typed (``modalities``, ``encode``, ``expert_eps``, ``logits``), so this
module needs no model code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch

from cdiff.errors import InputError

METHODS = ("collaborative", "composable")


class Predictor(Protocol):
    """The sampler's view of a model: raw conditions are encoded once per batch, then called per step."""

    device: torch.device

    def encode(self, raw: Any) -> Any: ...

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, enc: Any
    ) -> torch.Tensor | tuple[torch.Tensor, dict]: ...


def _cat(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([a[k], b[k].to(a[k].device)]) for k in a}


def guided(
    eps_fn: Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    cond: dict[str, torch.Tensor],
    uncond: dict[str, torch.Tensor] | None,
    scale: float,
) -> torch.Tensor:
    """Classifier-free guidance: ``u + scale * (e - u)``, cond and uncond in one batch of 2B."""
    if uncond is None:
        return eps_fn(x, t, cond)
    e, u = eps_fn(torch.cat([x, x]), torch.cat([t, t]), _cat(cond, uncond)).chunk(2)
    return u + scale * (e - u)


def influence_weights(logits: list[torch.Tensor]) -> torch.Tensor:
    """Softmax over modalities per latent pixel: ``M × (B, 1, h, w)`` → ``(M, B, 1, h, w)``."""
    return torch.softmax(torch.stack([lg.float() for lg in logits]), dim=0)


def combine(eps: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_m w_m * eps_m``; ``weights`` is ``(M, B, 1, h, w)`` (or ``(M, 1, 1, 1, 1)`` for fixed ones)."""
    out = weights[0] * eps[0].float()
    for w, e in zip(weights[1:], eps[1:], strict=True):
        out = out + w * e.float()
    return out


class CollabPredictor:
    """eps from one or more experts, combined by dynamic diffusers (``collaborative``) or fixed weights.

    Returns ``(eps, {"weights": (M, B, 1, h, w)})`` for several experts (the weights actually
    applied, for the sampler's callback) and plain ``eps`` for one. ``influence_every = k`` runs the
    diffusers on every k-th step only and reuses their maps in between; ``reweight`` is an
    optional ``(weights, modalities, t) -> weights`` schedule (the release's, say).
    """

    def __init__(
        self,
        collab: Any,
        method: str = "collaborative",
        weights: list[float] | tuple[float, ...] | None = None,
        reweight: Callable[[torch.Tensor, list[str], torch.Tensor], torch.Tensor] | None = None,
        influence_every: int = 1,
        guidance: float = 1.0,
        nulls: dict[str, torch.Tensor] | None = None,
    ):
        if method not in METHODS:
            raise InputError(f"unknown method '{method}'; choose {', '.join(METHODS)}")
        self.collab, self.method, self.reweight = collab, method, reweight
        self.every, self.guidance, self.nulls = influence_every, guidance, nulls or {}
        self.modalities = list(collab.modalities)
        M = len(self.modalities)
        w = torch.tensor(weights if weights is not None else [1.0 / M] * M, dtype=torch.float32)
        if len(w) != M:
            raise InputError(f"--weights needs {M} numbers (one per modality: {', '.join(self.modalities)})")
        if not all(math.isfinite(v) for v in w.tolist()):
            raise InputError("--weights must be finite numbers")
        self.fixed = w.view(M, 1, 1, 1, 1)
        self.device = next(collab.parameters()).device
        self._calls, self._last = 0, None

    def encode(self, raw: dict[str, torch.Tensor]) -> tuple[dict, dict | None]:
        self.restart()
        conds = self.collab.encode(raw)
        if self.guidance == 1.0:
            return conds, None
        nulls = {m: self.nulls[m].expand_as(raw[m]).to(raw[m].device) for m in self.modalities}
        return conds, self.collab.encode(nulls)

    def restart(self) -> None:
        """A new batch: influence maps start afresh."""
        self._calls, self._last = 0, None

    def __call__(self, x: torch.Tensor, t: torch.Tensor, enc) -> torch.Tensor | tuple[torch.Tensor, dict]:
        conds, unconds = enc
        eps = [
            guided(
                lambda xi, ti, ci, m=m: self.collab.expert_eps(xi, ti, {m: ci}, [m])[0],
                x,
                t,
                conds[m],
                None if unconds is None else unconds[m],
                self.guidance,
            )
            for m in self.modalities
        ]
        if self.method == "composable":
            weights = self.fixed.to(x.device).expand(-1, x.shape[0], 1, *x.shape[2:])
        else:
            if self._last is None or self._calls % self.every == 0:
                self._last = influence_weights(self.collab.logits(x, t, conds))
            weights = self._last
            if self.reweight is not None:
                weights = self.reweight(weights, self.modalities, t)
        self._calls += 1
        if len(self.modalities) == 1:
            return combine(eps, weights)
        return combine(eps, weights), {"weights": weights}


class OneExpert:
    """One model as a collaboration of one (training previews): it is not frozen or moved."""

    def __init__(self, model: Any, modality: str):
        self.model, self.modalities = model, [modality]

    def parameters(self):
        return self.model.parameters()

    def encode(self, raw: dict[str, torch.Tensor]) -> dict[str, dict]:
        return {m: self.model.encode(raw[m]) for m in self.modalities}

    def expert_eps(self, x, t, conds: dict[str, dict], only: list[str] | None = None) -> list[torch.Tensor]:
        return [self.model(x, t, conds[m]).float() for m in only or self.modalities]

    def logits(self, x, t, conds):  # pragma: no cover - composable only
        raise InputError("one expert has no dynamic diffusers")


def single(
    model: Any, modality: str, guidance: float = 1.0, null: torch.Tensor | None = None
) -> CollabPredictor:
    """The predictor of one uni-modal model (weight 1; guided when ``guidance != 1``)."""
    nulls = {modality: null} if null is not None else None
    return CollabPredictor(OneExpert(model, modality), "composable", [1.0], guidance=guidance, nulls=nulls)


__all__ = ["CollabPredictor", "OneExpert", "single", "Predictor", "combine", "guided", "influence_weights"]
