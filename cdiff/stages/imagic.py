"""Imagic (seed §A.2, REFERENCE.md §3): optimise the embedding, fine-tune the UNet, interpolate.

For each target modality m:
1. e_tgt = the expert's encoding of the target; z_0 = the VAE latent (posterior mean) of the photo.
2. Optimise the embedding e (from e_tgt) with Adam so that the frozen model reconstructs the photo:
   loss ||eps - eps_theta(z_t, t, e)||^2, fresh t and eps each step → e_opt.
3. Fine-tune that modality's UNet (only the UNet) with e_opt fixed, same loss.
4. Generate with e = alpha * e_tgt + (1 - alpha) * e_opt for each alpha, from one saved start noise;
   with several targets, the fine-tuned experts together with the dynamic diffusers, one alpha for all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cdiff import modalities
from cdiff.config import Config
from cdiff.data.datasets import to_tensor
from cdiff.diffusion.predictors import CollabPredictor
from cdiff.diffusion.schedule import q_sample
from cdiff.models.collab import Collaboration
from cdiff.models.unimodal import UnimodalModel
from cdiff.stages import sampling_common as sc

EVAL_DRAWS = 16  # fixed (t, eps) draws on which the reconstruction loss is reported


def photo_latent(vae, image: np.ndarray, scale: float) -> torch.Tensor:
    """z_0 = the posterior mean of the photo, times the scale factor: ``(1, C, h, w)``."""
    x = to_tensor(image)[None].to(next(vae.parameters()).device)
    return vae.encode(x).latent_dist.mean * scale


def image_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) between two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _float_keys(cond: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in cond.items() if v.is_floating_point()]


def _draws(n: int, z0: torch.Tensor, T: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.randint(0, T, (n,), generator=generator)
    eps = torch.randn((n, *z0.shape[1:]), generator=generator)
    return t, eps


def _loss(expert: UnimodalModel, z0, cond, t, eps, alpha_bar) -> torch.Tensor:
    n, t, eps = len(t), t.to(z0.device), eps.to(z0.device)  # draws on the CPU: the same on any device
    z_t = q_sample(z0.expand(n, -1, -1, -1), t, eps, alpha_bar)
    c = {k: v.expand(n, *v.shape[1:]) for k, v in cond.items()}
    return F.mse_loss(expert(z_t, t, c), eps)


@torch.no_grad()
def reconstruction_loss(expert, z0, cond, alpha_bar, seed: int = 1234) -> float:
    """Mean epsilon error over fixed draws: how well (model, embedding) explain the photo."""
    t, eps = _draws(EVAL_DRAWS, z0, len(alpha_bar), torch.Generator().manual_seed(seed))
    return _loss(expert, z0, cond, t, eps, alpha_bar).item()


def optimise_embedding(
    expert: UnimodalModel,
    z0: torch.Tensor,
    target: dict[str, torch.Tensor],
    steps: int,
    lr: float,
    batch: int,
    alpha_bar: torch.Tensor,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Step 2: e_opt, starting from e_tgt, with the model frozen (every float condition tensor is optimised)."""
    expert.eval().requires_grad_(False)
    params = {
        k: (v.detach().clone().requires_grad_(True) if k in _float_keys(target) else v)
        for k, v in target.items()
    }
    trainable = [params[k] for k in _float_keys(target)]
    _adam(trainable, expert, z0, params, steps, lr, batch, alpha_bar, seed, progress, dtype)
    return {k: v.detach() for k, v in params.items()}


def finetune_unet(
    expert: UnimodalModel,
    z0: torch.Tensor,
    cond: dict[str, torch.Tensor],
    steps: int,
    lr: float,
    batch: int,
    alpha_bar: torch.Tensor,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Step 3: fine-tune ``expert.unet`` in place with the optimised embedding fixed."""
    expert.requires_grad_(False)
    expert.unet.train().requires_grad_(True)
    params = list(expert.unet.parameters())
    _adam(params, expert, z0, cond, steps, lr, batch, alpha_bar, seed + 1, progress, dtype)
    expert.eval().requires_grad_(False)


def _adam(
    trainable, expert, z0, cond, steps, lr, batch, alpha_bar, seed, progress, dtype=torch.float32
) -> None:
    """Adam on ``trainable`` for the reconstruction loss, fresh (t, eps) draws each step (``batch``
    draws per step); ``dtype`` bfloat16/float16: the forward and backward under autocast (mixed
    precision: the weights, the embedding and Adam's state stay float32)."""
    opt = torch.optim.Adam(trainable, lr=lr)
    g = torch.Generator().manual_seed(seed)
    mixed = torch.autocast(z0.device.type, dtype=dtype, enabled=dtype != torch.float32)
    for step in range(steps):
        t, eps = _draws(batch, z0, len(alpha_bar), g)
        with mixed:
            loss = _loss(expert, z0, cond, t, eps, alpha_bar).float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, steps)


# ---- rendering ------------------------------------------------------------------------------


def interpolate(target: dict, optimised: dict, alphas: torch.Tensor) -> dict[str, torch.Tensor]:
    """e = alpha * e_tgt + (1 - alpha) * e_opt for each alpha (a batch); integer tensors pass through."""
    out = {}
    for k, v in target.items():
        if v.is_floating_point():
            a = alphas.to(v.dtype).view(-1, *([1] * (v.dim() - 1)))
            out[k] = a * v + (1 - a) * optimised[k]
        else:
            out[k] = v.expand(len(alphas), *v.shape[1:])
    return out


class EditPredictor:
    """A predictor whose "raw condition" is alpha: the conditions are interpolated embeddings."""

    def __init__(self, base: CollabPredictor, targets: dict, optimised: dict):
        self.base, self.targets, self.optimised = base, targets, optimised
        self.device = base.device

    def encode(self, alphas: torch.Tensor):
        self.base.restart()
        dev = self.device
        conds = {
            m: {
                k: v.to(dev) for k, v in interpolate(self.targets[m], self.optimised[m], alphas.cpu()).items()
            }
            for m in self.targets
        }
        return conds, None

    def __call__(self, x, t, enc):
        return self.base(x, t, enc)


@dataclass
class EditState:
    """What an alpha sweep needs: the (fine-tuned) experts, both embeddings, the start noise, the settings.

    ``diffusers``: the run's dynamic diffusers (several targets), else None.
    """

    run_dir: Path
    experts: dict[str, UnimodalModel]
    targets: dict[str, dict[str, torch.Tensor]]
    optimised: dict[str, dict[str, torch.Tensor]]
    noise: torch.Tensor
    vae: Any
    vae_meta: dict
    settings: dict  # seed, steps, eta, solver, modalities, ...
    diffusers: Any = None
    raw: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # the targets' raw rows
    values: dict[str, Any] = dataclasses.field(default_factory=dict)  # the targets as given
    image: np.ndarray | None = None  # the photo at the model's resolution

    def pictures(self, size: int) -> list[np.ndarray]:
        """The pictures of the targets that have one (a mask, say), for grids."""
        tiles = [modalities.get(m).tile(row[0].cpu(), size) for m, row in self.raw.items()]
        return [t for t in tiles if t is not None]

    def only(self, m: str) -> EditState:
        """The same edit restricted to modality ``m`` (a uni-modal sweep)."""
        return dataclasses.replace(
            self, experts={m: self.experts[m]}, targets={m: self.targets[m]}, optimised={m: self.optimised[m]}
        )


def render(
    cfg: Config, state: EditState, alphas: list[float], callback=None, progress=None
) -> list[np.ndarray]:
    """The alpha sweep from one start noise and one seed (image k depends only on alpha k)."""
    mods = list(state.targets)
    if len(mods) == 1:
        collab = Collaboration({mods[0]: state.experts[mods[0]]}, None, mods)
        base = CollabPredictor(collab, "composable", [1.0])
    else:
        order = list(state.diffusers.modalities)
        base = CollabPredictor(Collaboration(state.experts, state.diffusers, order), "collaborative")
    n = len(alphas)
    return sc.generate_images(
        EditPredictor(base, state.targets, state.optimised),
        state.vae,
        state.vae_meta,
        cfg,
        torch.tensor(alphas, dtype=torch.float32),
        [state.settings["seed"]] * n,
        callback=callback,
        progress=progress,
        x_start=state.noise.expand(n, *state.noise.shape[1:]),
    )
