"""The trained VAE: latent scale factor, reconstruction metrics, export and loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

from cdiff import config as cfg_mod
from cdiff.config import VAEConfig
from cdiff.errors import InputError
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


def export_vae(
    folder: Path, vae: AutoencoderKL, cfg: VAEConfig, scale_factor: float, resolution: int
) -> None:
    """``model.safetensors`` + ``config.json`` (architecture, scale factor, latent shape)."""
    state = {k: v.detach().contiguous().cpu() for k, v in vae.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})  # one key: byte-identical files
    meta = {
        "kind": "vae",
        "vae": cfg_mod.to_dict(cfg),
        "scale_factor": scale_factor,
        "resolution": resolution,
        "latent_size": resolution // vae_downsample(cfg),
        "latent_channels": cfg.latent_channels,
    }
    (folder / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


def load_vae(folder: str | Path, device: str | torch.device = "cpu") -> tuple[AutoencoderKL, dict[str, Any]]:
    """A trained VAE (eval mode) and its ``config.json`` record."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise InputError(f"no trained VAE in {folder}; run `cdiff train-vae` first")
    meta = json.loads((folder / CONFIG).read_text())
    cfg = cfg_mod.build(VAEConfig, {k: v for k, v in meta["vae"].items() if k != "train"} | {"train": {}})
    vae = build_vae(cfg)
    vae.load_state_dict(load_file(str(folder / WEIGHTS)))
    return vae.to(device).eval().requires_grad_(False), meta
