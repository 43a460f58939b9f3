"""Stage ``train-unimodal``: a text- or mask-driven latent diffusion model, from scratch.

1. Open the dataset and the trained VAE; encode the training images into the latent cache
   (once); tokenize the captions or load the label maps.
2. Train UNet + condition encoder jointly with the epsilon objective on
   z_t = sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) eps (z_0 a fresh posterior sample times
   the scale factor), dropping the condition with probability ``cond_dropout``.
3. At intervals, sample validation conditions into a grid.
4. Export ``<modality>/model.safetensors`` + ``config.json`` + the tokenizer, and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cdiff import config as cfg_mod
from cdiff import modalities
from cdiff.config import Config
from cdiff.data.prepared import PreparedDataset
from cdiff.diffusion.predictors import single
from cdiff.diffusion.schedule import alphas_cumprod, q_sample
from cdiff.modalities import Context
from cdiff.models import store
from cdiff.models.unimodal import UnimodalModel, unimodal_record
from cdiff.stages import latents as latent_cache
from cdiff.stages import sampling_common as sc
from cdiff.stages import training_common as tc
from cdiff.training.loop import Task, fit

GRID_CONDITIONS = 8


class ConditionedLatents(Dataset):
    """Latent posterior (mean, std) + the raw condition: token ids (text) or a label map (mask)."""

    def __init__(self, lat: dict[str, torch.Tensor], conditions: torch.Tensor):
        self.mean, self.std, self.cond = lat["mean"], lat["std"], conditions

    def __len__(self) -> int:
        return len(self.mean)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"mean": self.mean[i], "std": self.std[i], "cond": self.cond[i]}


def min_snr_weight(alpha_bar_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights for epsilon-prediction (Hang et al. 2023): min(SNR, gamma) / SNR."""
    snr = alpha_bar_t / (1 - alpha_bar_t)
    return snr.clamp(max=gamma) / snr


class UnimodalTask(Task):
    trainable = ("model",)

    def __init__(self, model: UnimodalModel, cfg: Config, scale: float, null: torch.Tensor | None):
        super().__init__()
        self.model, self.scale, self.dropout = model, scale, cfg.unimodal.cond_dropout
        self.snr_gamma = cfg.unimodal.snr_gamma
        self.register_buffer("alpha_bar", alphas_cumprod(cfg.diffusion).float(), persistent=False)
        self.register_buffer("null", null if null is not None else torch.zeros(0), persistent=False)

    def forward(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        mean, std, cond = batch["mean"], batch["std"], batch["cond"]
        B, dev = mean.shape[0], mean.device
        z0 = (mean + std * torch.randn(mean.shape, generator=generator, device=dev)) * self.scale
        t = torch.randint(0, len(self.alpha_bar), (B,), generator=generator, device=dev)
        eps = torch.randn(z0.shape, generator=generator, device=dev)
        if self.dropout > 0:
            drop = torch.rand(B, generator=generator, device=dev) < self.dropout
            null = self.null.expand_as(cond) if self.null.numel() else torch.zeros_like(cond)
            cond = torch.where(drop.view(-1, *([1] * (cond.dim() - 1))), null, cond)
        pred = self.model(q_sample(z0, t, eps, self.alpha_bar), t, self.model.encode(cond))
        if self.snr_gamma is None:
            return F.mse_loss(pred.float(), eps), {}
        per_sample = (pred.float() - eps).pow(2).mean(dim=(1, 2, 3))
        return (min_snr_weight(self.alpha_bar[t], self.snr_gamma) * per_sample).mean(), {}


@dataclass
class UnimodalReport:
    out: Path
    modality: str
    steps: int
    wall_time_s: float
    samples_per_s: float
    parameters: dict[str, int]
    final_loss: float


def parameter_counts(cfg: Config, modality: str, vocab_size: int | None = None) -> dict[str, int]:
    """Exact counts, built on the meta device (no memory)."""
    vocab = vocab_size or cfg.unimodal.text_encoder.vocab_size or 30522
    latent = cfg.data.resolution // 2 ** (len(cfg.vae.block_out_channels) - 1)
    with torch.device("meta"):
        counts = UnimodalModel(
            cfg.unimodal, modality, cfg.vae.latent_channels, latent, vocab
        ).parameter_counts()
    return counts | modalities.get(modality).parameter_notes(cfg.unimodal, vocab)


def run(
    cfg: Config,
    modality: str,
    run_dir: Path,
    data_dir: Path,
    out: Path,
    *,
    force: bool = False,
    resume: bool = False,
    log=print,
) -> UnimodalReport:
    stage = tc.TrainingOutput(out, force, resume)  # before any set-up: finished work is refused at once
    # 1. inputs
    data = PreparedDataset.open(data_dir)
    vae_dir = tc.require_vae(run_dir)
    vae_meta = store.read_record(vae_dir, "vae")
    lat = latent_cache.load_or_encode(run_dir / "latents", data, vae_dir, "train", log=log)
    kind = modalities.get(modality)
    ctx = Context(
        vae_meta["resolution"], {"unimodal": cfg_mod.to_dict(cfg.unimodal)}, data=data, run_dir=run_dir
    )
    cond = kind.from_dataset(data, data.split("train"), ctx)
    vocab = kind.vocab_size(data)
    torch.manual_seed(cfg.unimodal.train.seed)  # the initial weights are part of a reproducible run
    model = UnimodalModel(cfg.unimodal, modality, vae_meta["latent_channels"], vae_meta["latent_size"], vocab)
    null = kind.null(cond, ctx) if cfg.unimodal.cond_dropout > 0 else None
    task = UnimodalTask(model, cfg, vae_meta["scale_factor"], null)
    partial = stage.begin(cfg)

    # 2-3. train, with validation grids
    val_ids = tc.preview_ids(data, GRID_CONDITIONS)
    val_cond = {modality: kind.from_dataset(data, val_ids, ctx)}
    vae, _ = store.load(vae_dir, "vae")

    def on_sample(step: int, t: Task) -> None:
        images = sc.preview_images(
            single(t.model, modality), t.model, vae, vae_meta, cfg, val_cond, len(val_ids)
        )
        sc.save_condition_grid(stage.sample_path(step), data, val_ids, modality, images)

    result = fit(
        task, ConditionedLatents(lat, cond), cfg.unimodal.train, partial, resume=resume, on_sample=on_sample
    )

    # 4. export
    model.eval()
    _export(partial, model, kind, data, cfg, vae_meta, vocab)
    counts = model.parameter_counts()
    final_loss = sc.last_metric(partial, "loss")
    stage.finish(
        f"train-unimodal-{modality}",
        cfg,
        tc.inputs(data_dir, data, {"vae": vae_dir}),
        tc.hashed(partial),
        metrics={"steps": result.step, "final_loss": final_loss, "samples_per_s": result.samples_per_s},
        parameters=counts,
    )
    return UnimodalReport(
        out, modality, result.step, stage.elapsed(), result.samples_per_s, counts, final_loss
    )


def _export(
    partial: Path, model: UnimodalModel, kind, data: PreparedDataset, cfg: Config, vae_meta: dict, vocab
):
    """The model's weights and config (what sampling needs of the VAE with them), and the modality's assets."""
    meta = {
        "latent_channels": vae_meta["latent_channels"],
        "latent_size": vae_meta["latent_size"],
        "scale_factor": vae_meta["scale_factor"],
        "vocab_size": vocab,
        "diffusion": cfg_mod.to_dict(cfg.diffusion),
        "resolution": vae_meta["resolution"],
    }
    store.save(partial, "unimodal", model, unimodal_record(model, meta))
    kind.export_assets(data, partial)


__all__ = ["parameter_counts", "run"]
