"""Samplers over any noise predictor ``eps(x_t, t)`` (k-diffusion style: one signature, a callback).

A predictor may also return ``(eps, extras)``: the extras (e.g. the influence maps of a
collaboration) reach the callback untouched, so the sampler has no special cases.

Image k depends only on seed k: its start noise and every step's fresh noise come from its own
generator, so batching changes nothing but speed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from cdiff.errors import InputError

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | tuple[torch.Tensor, dict]]


@dataclass
class StepInfo:
    """What the callback sees at each step (for visualising intermediates)."""

    index: int  # 0 .. steps-1
    t: int  # the model timestep of this step
    x_t: torch.Tensor  # the latent fed to the model at this step
    eps: torch.Tensor  # the (combined) noise prediction
    pred_x0: torch.Tensor  # the predicted clean latent
    extras: dict = field(default_factory=dict)  # whatever the predictor returned beside eps


MAX_SEED = 2**63 - 1  # what a torch generator takes, signed


def check_seed(seed: int, count: int = 1, option: str = "--seed") -> None:
    """Seeds ``seed … seed + count - 1`` must all be integers a generator takes (0 … 2^63 - 1)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or seed + max(count, 1) - 1 > MAX_SEED:
        top = MAX_SEED - max(count, 1) + 1
        also = f" (the {count} images take seeds from it up to it + {count - 1})" if count > 1 else ""
        raise InputError(f"{option} must be a whole number from 0 to {top}{also}, got {seed!r:.40}")


def seeded_noise(
    shape: Sequence[int], generators: list[torch.Generator], device: torch.device
) -> torch.Tensor:
    """One ``shape`` sample per generator, stacked: ``(len(generators), *shape)``."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators]).to(device)


@torch.no_grad()
def sample(
    eps_fn: EpsFn,
    scheduler,
    shape: Sequence[int],
    seeds: Sequence[int],
    steps: int = 50,
    eta: float = 1.0,
    device: torch.device | str = "cpu",
    callback: Callable[[StepInfo], None] | None = None,
    disable_progress: bool = True,
    x_start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run a diffusers scheduler (DDIM, DPM-Solver++) from seeded noise; returns x_0 ``(B, *shape)``.

    ``x_start`` replaces the seeded start noise (e.g. an edit's saved noise); the per-step DDIM
    noise still comes from the seeds.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x = seeded_noise(shape, gens, device) * scheduler.init_noise_sigma
    if x_start is not None:
        x = x_start.to(device=device, dtype=x.dtype) * scheduler.init_noise_sigma
    scheduler.set_timesteps(steps, device=device)
    takes_eta = "eta" in inspect.signature(scheduler.step).parameters  # DDIM; DPM-Solver++ is deterministic
    for i, t in enumerate(tqdm(scheduler.timesteps, disable=disable_progress, unit="step")):
        x_in = scheduler.scale_model_input(x, t)
        eps = eps_fn(x_in, t.expand(x.shape[0]))
        extras: dict = {}
        if isinstance(eps, tuple):
            eps, extras = eps
        kwargs = {}
        if takes_eta:
            kwargs = {"eta": eta, "variance_noise": seeded_noise(shape, gens, device) if eta > 0 else None}
        out = scheduler.step(eps, t, x, **kwargs)
        if callback is not None:
            pred_x0 = getattr(out, "pred_original_sample", None)
            if pred_x0 is None:  # DPM-Solver++ does not return it: x_0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)
                ab = scheduler.alphas_cumprod[int(t)].to(device=x.device, dtype=x.dtype)
                pred_x0 = (x_in - (1 - ab).sqrt() * eps) / ab.sqrt()
            callback(StepInfo(i, int(t), x, eps, pred_x0, extras))
        x = out.prev_sample
    return x
