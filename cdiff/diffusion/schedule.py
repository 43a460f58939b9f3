"""The diffusion process, an object without weights (improved-diffusion style).

LDM's "linear" schedule: beta_t = (linspace(sqrt(0.0015), sqrt(0.0195), T))^2, which diffusers
calls ``scaled_linear``. The forward process is x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from cdiff.config import DiffusionConfig


def alphas_cumprod(cfg: DiffusionConfig) -> torch.Tensor:
    """alpha_bar_t for t = 0..T-1 (float64 for exactness, as the release computes it)."""
    betas = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, cfg.timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps; ``t`` is ``(B,)``."""
    ab = alpha_bar.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def _schedule(cfg: DiffusionConfig) -> dict:
    """The training schedule in diffusers' terms, shared by every sampler."""
    return {
        "num_train_timesteps": cfg.timesteps,
        "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
    }


def ddim_scheduler(cfg: DiffusionConfig) -> DDIMScheduler:
    """DDIM set up as the release samples: "leading" spacing with offset 1 (t = 1, 21, ..., 981 for 50 steps)."""
    return DDIMScheduler(
        **_schedule(cfg),
        timestep_spacing="leading",
        steps_offset=1,
        clip_sample=False,
        set_alpha_to_one=False,
    )


def dpm_solver(cfg: DiffusionConfig) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2M), a faster sampler over the same schedule."""
    return DPMSolverMultistepScheduler(**_schedule(cfg), algorithm_type="dpmsolver++", solver_order=2)
