"""The latent cache shared by the diffusion stages (not a stage of its own).

Every prepared image is encoded once by the trained VAE; the posterior mean and standard
deviation are kept (fp16) in ``RUN/latents/<split>.safetensors``, so diffusion training draws
a fresh posterior sample per step without running the encoder. The cache records the hashes of
the VAE weights and of the dataset; when either changes, it is rebuilt.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cdiff.data.datasets import ImageDataset
from cdiff.data.prepared import PreparedDataset
from cdiff.models import store
from cdiff.models.vae import WEIGHTS
from cdiff.rundir import atomic_write_json, sha256_file

KEY = "key.json"


def cache_key(data: PreparedDataset, vae_dir: Path) -> dict:
    return {"vae_sha256": sha256_file(vae_dir / WEIGHTS), "data": data.manifest["outputs"]}


@torch.no_grad()
def load_or_encode(
    cache: Path, data: PreparedDataset, vae_dir: Path, split: str, batch: int = 64, log=print
) -> dict[str, torch.Tensor]:
    """``{"mean", "std"}`` (float32, ``(N, C, h, w)``) for ``split``'s images, in split order."""
    key = cache_key(data, vae_dir)
    path = cache / f"{split}.safetensors"
    if path.is_file() and (cache / KEY).is_file() and json.loads((cache / KEY).read_text()) == key:
        return {k: v.float() for k, v in load_file(str(path)).items()}
    if (cache / KEY).is_file() and json.loads((cache / KEY).read_text()) != key:
        for old in cache.glob("*.safetensors"):  # a different VAE or dataset: invalidate everything
            old.unlink()
    vae, _ = store.load(vae_dir, "vae")
    images = ImageDataset(data, split, cache=False)
    means, stds = [], []
    for i in range(0, len(images), batch):
        x = torch.stack([images[j]["image"] for j in range(i, min(i + batch, len(images)))])
        dist = vae.encode(x).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    out = {"mean": torch.cat(means), "std": torch.cat(stds)}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.half().contiguous() for k, v in out.items()}, str(tmp))
    tmp.replace(path)
    atomic_write_json(cache / KEY, key)
    log(f"encoded {len(images)} {split} images into the latent cache {path}")
    return {k: v.half().float() for k, v in out.items()}  # the same values a later load returns
