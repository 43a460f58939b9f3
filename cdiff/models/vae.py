"""The trained VAE: latent scale factor, reconstruction metrics, export and loading."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from cdiff import config as cfg_mod
from cdiff.config import VAEConfig
from cdiff.models import store
from cdiff.models.build import build_vae, vae_downsample

WEIGHTS, CONFIG = "model.safetensors", "config.json"


@torch.no_grad()
def latent_scale_factor(vae: AutoencoderKL, images: torch.Tensor, batch: int = 32, seed: int = 0) -> float:
    """1 / std of posterior samples over ``images`` (the LDM recipe: 0.058 / 0.141 at paper scale)."""
    g = torch.Generator(device=images.device).manual_seed(seed)
    zs = [
        vae.encode(images[i : i + batch]).latent_dist.sample(generator=g)
        for i in range(0, len(images), batch)
    ]
    return float(1.0 / torch.cat(zs).float().std())


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    """Decode the posterior mean (what the metrics and grids show)."""
    return vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB for images in [-1, 1]."""
    mse = F.mse_loss((x + 1) / 2, (y + 1) / 2).item()
    return float(10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))))


def vae_record(vae: AutoencoderKL, cfg: VAEConfig, scale_factor: float, resolution: int) -> dict[str, Any]:
    """What ``config.json`` says of a VAE: architecture, scale factor, latent shape."""
    return {
        "vae": cfg_mod.to_dict(cfg),
        "scale_factor": scale_factor,
        "resolution": resolution,
        "latent_size": resolution // vae_downsample(cfg),
        "latent_channels": cfg.latent_channels,
    }


def _build(record: dict[str, Any]) -> AutoencoderKL:
    return build_vae(
        cfg_mod.build(VAEConfig, {k: v for k, v in record["vae"].items() if k != "train"} | {"train": {}})
    )


store.register(
    store.Kind(
        "vae",
        "trained VAE",
        build=_build,
        parts=lambda vae: {WEIGHTS: vae},
        files=(WEIGHTS,),
        command=lambda folder: f"cdiff train-vae --run {folder.parent}",
    )
)
