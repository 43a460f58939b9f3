"""Stage ``train-vae``: the KL autoencoder that maps images to diffusion latents.

1. Open the prepared dataset; build the VAE (and, when asked, the perceptual net and critic).
2. Train with the shared loop; at intervals, reconstruct fixed validation images into a grid
   and log validation L1 / PSNR.
3. Compute the latent scale factor (1 / std of training latents).
4. Export ``vae/model.safetensors`` + ``config.json``, a final reconstruction grid, the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cdiff.config import Config, VAEConfig
from cdiff.data.datasets import ImageDataset, to_uint8
from cdiff.data.prepared import PreparedDataset
from cdiff.imageio import grid, save_png
from cdiff.models import store
from cdiff.models.build import build_vae, count_parameters
from cdiff.models.vae import latent_scale_factor, psnr, reconstruct, vae_record
from cdiff.models.vae_loss import PatchGAN, VGGPerceptual, find_vgg16, hinge_d_loss
from cdiff.stages import training_common as tc
from cdiff.training.loop import Task, fit

GRID_IMAGES = 8


class VAETask(Task):
    """L1 + w_p · perceptual + w_kl · KL (seed eq. 1), plus an optional hinge PatchGAN term.

    The KL term is summed over the latent and divided by the number of pixels, which keeps the
    LDM ratio between the per-pixel reconstruction sum and ``1e-6 · KL``. With a critic, one
    optimiser serves both players: the critic's loss sees detached reconstructions, and the
    autoencoder's adversarial term sees the critic through detached parameters.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.vae = build_vae(cfg)
        if cfg.logvar_init:
            with torch.no_grad():
                self.vae.quant_conv.bias[cfg.latent_channels :].fill_(cfg.logvar_init)
        self.perceptual = VGGPerceptual(find_vgg16(cfg.vgg_weights)) if cfg.perceptual_weight > 0 else None
        self.disc = PatchGAN() if cfg.disc_weight > 0 else None
        self.trainable = ("vae", "disc") if self.disc is not None else ("vae",)

    def forward(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        x = batch["image"]  # (B, 3, H, W) in [-1, 1]
        posterior = self.vae.encode(x).latent_dist
        x_rec = self.vae.decode(posterior.sample(generator=generator)).sample
        l1 = (x - x_rec).abs().mean()
        kl = posterior.kl().mean() / x[0].numel()
        loss = l1 + self.cfg.kl_weight * kl
        logs = {"l1": l1.item(), "kl": kl.item()}
        if self.perceptual is not None:
            p = self.perceptual(x, x_rec).mean()
            loss = loss + self.cfg.perceptual_weight * p
            logs["perceptual"] = p.item()
        if self.disc is not None:
            if self.current_step >= self.cfg.disc_start:
                params = {k: v.detach() for k, v in self.disc.named_parameters()}
                g_loss = -torch.func.functional_call(self.disc, params, (x_rec,)).mean()
                d_loss = hinge_d_loss(self.disc(x), self.disc(x_rec.detach()))
                loss = loss + self.cfg.disc_weight * g_loss + d_loss
                logs.update(g_loss=g_loss.item(), d_loss=d_loss.item())
            else:  # keep the critic in the graph (DDP needs every parameter used) without training it
                loss = loss + 0.0 * sum(p.sum() for p in self.disc.parameters())
        return loss, logs


@dataclass
class VAEReport:
    out: Path
    steps: int
    wall_time_s: float
    samples_per_s: float
    val_l1: float
    val_psnr: float
    scale_factor: float
    parameters: int


def parameter_counts(cfg: Config) -> dict[str, int]:
    return {"vae (AutoencoderKL)": count_parameters(lambda: build_vae(cfg.vae))}


def run(
    cfg: Config, data_dir: Path, out: Path, *, force: bool = False, resume: bool = False, log=print
) -> VAEReport:
    stage = tc.TrainingOutput(out, force, resume)  # before any set-up: finished work is refused at once
    # 1. data and models
    data = PreparedDataset.open(data_dir)
    train = ImageDataset(data, "train")
    val_ids = tc.preview_ids(data, GRID_IMAGES)
    val_x = torch.stack([ImageDataset(data, "val", ids=val_ids)[i]["image"] for i in range(len(val_ids))])
    torch.manual_seed(cfg.vae.train.seed)  # the initial weights are part of a reproducible run
    task = VAETask(cfg.vae)
    if task.perceptual is None:
        log("note: perceptual loss off (vae.perceptual_weight=0): L1 + KL only")
    partial = stage.begin(cfg)

    # 2. train
    def on_sample(step: int, t: Task) -> None:
        t.eval()
        rec = reconstruct(t.vae, val_x.to(next(t.vae.parameters()).device)).cpu()
        t.train()
        save_png(stage.sample_path(step), _pairs_grid(val_x, rec))
        stage.log_metrics(
            {"step": step, "val_l1": (val_x - rec).abs().mean().item(), "val_psnr": psnr(val_x, rec)}
        )

    result = fit(task, train, cfg.vae.train, partial, resume=resume, on_sample=on_sample)

    # 3. scale factor on (up to) 512 training images
    vae = task.vae.eval()
    probe = torch.stack([train[i]["image"] for i in range(min(512, len(train)))])
    scale = latent_scale_factor(vae, probe, seed=cfg.vae.train.seed)
    rec = reconstruct(vae, val_x)
    val_l1, val_psnr = (val_x - rec).abs().mean().item(), psnr(val_x, rec)

    # 4. export
    store.save(partial, "vae", vae, vae_record(vae, cfg.vae, scale, data.resolution))
    save_png(
        partial / "reconstructions.png", _pairs_grid(val_x, rec), {"rows": "input, reconstruction pairs"}
    )
    parameters = sum(p.numel() for p in vae.parameters())
    metrics = {
        "steps": result.step,
        "val_l1": val_l1,
        "val_psnr_db": val_psnr,
        "scale_factor": scale,
        "samples_per_s": result.samples_per_s,
    }
    inputs = tc.inputs(data_dir, data)
    stage.finish(
        "train-vae", cfg, inputs, tc.hashed(partial), metrics=metrics, parameters={"vae": parameters}
    )
    return VAEReport(
        out, result.step, stage.elapsed(), result.samples_per_s, val_l1, val_psnr, scale, parameters
    )


def _pairs_grid(x: torch.Tensor, rec: torch.Tensor):
    """(input, reconstruction) pairs, two pairs a row."""
    return grid([to_uint8(v) for pair in zip(x, rec, strict=True) for v in pair], ncol=4)
