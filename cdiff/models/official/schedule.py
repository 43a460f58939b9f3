"""The diffusion schedule buffers of the release, rebuilt from cdiff's config and checked against a file."""

from __future__ import annotations

from pathlib import Path

import torch

from cdiff.config import DiffusionConfig
from cdiff.errors import InputError
from cdiff.models.official.layout import SCHEDULE


def ldm_schedule(cfg: DiffusionConfig) -> dict[str, torch.Tensor]:
    """LatentDiffusion's schedule buffers for ``cfg`` (linear-in-sqrt betas, v_posterior = 0), float64."""
    betas = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, cfg.timesteps, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    prev = torch.cat([ac.new_ones(1), ac[:-1]])
    post_var = betas * (1 - prev) / (1 - ac)
    return {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / ac - 1).sqrt(),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1 - ac),
        "posterior_mean_coef2": (1 - prev) * (1 - betas).sqrt() / (1 - ac),
    }


def check_schedule(path: Path, sd: dict[str, torch.Tensor], cfg: DiffusionConfig) -> int:
    """The file's schedule buffers equal cdiff's (float32 precision); returns how many were checked."""
    ours = ldm_schedule(cfg)
    checked = 0
    for name in SCHEDULE:
        if name not in sd:
            continue
        theirs = sd[name].double()
        if theirs.shape != ours[name].shape or not torch.allclose(theirs, ours[name], rtol=1e-5, atol=1e-8):
            raise InputError(
                f"{path}: its {name} differ from cdiff's schedule (T={cfg.timesteps}, beta {cfg.beta_start}"
                f"..{cfg.beta_end}); set --set diffusion.* to the file's schedule"
            )
        checked += 1
    return checked
