"""Stage ``train-diffuser``: the dynamic diffusers that let the uni-modal experts collaborate.

1. Load the trained uni-modal experts named in ``diffuser.modalities`` (frozen: eval mode, no
   gradients, their activations never stored; optionally cast to bf16/fp16) and the latent cache.
2. Train only the diffusers with eps_hat = sum_m softmax_m(I_m) * eps_m and the loss
   ||eps - eps_hat||^2 on z_t = sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) eps, with the shared loop.
3. At intervals, sample validation (mask, caption) pairs collaboratively into a grid.
4. Export ``diffuser/model.safetensors`` + ``config.json`` and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cdiff import config as cfg_mod
from cdiff import modalities
from cdiff.config import Config
from cdiff.data.prepared import PreparedDataset
from cdiff.diffusion.predictors import CollabPredictor, combine, guided, influence_weights
from cdiff.diffusion.schedule import alphas_cumprod, q_sample
from cdiff.errors import InputError
from cdiff.imageio import grid, save_png
from cdiff.modalities import Context
from cdiff.models import store
from cdiff.models.collab import DTYPES, Collaboration, DiffuserSet, diffuser_record
from cdiff.models.unimodal import UnimodalModel
from cdiff.rundir import output_sha, require_stage
from cdiff.stages import latents as latent_cache
from cdiff.stages import sampling_common as sc
from cdiff.stages import training_common as tc
from cdiff.training.loop import Task, fit

GRID_CONDITIONS = 8


class MultiConditionedLatents(Dataset):
    """Latent posterior (mean, std) + one raw condition per modality."""

    def __init__(self, lat: dict[str, torch.Tensor], conditions: dict[str, torch.Tensor]):
        self.mean, self.std, self.cond = lat["mean"], lat["std"], conditions

    def __len__(self) -> int:
        return len(self.mean)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"mean": self.mean[i], "std": self.std[i], **{f"cond_{m}": c[i] for m, c in self.cond.items()}}


class DiffuserTask(Task):
    """Only ``diffusers`` train; the experts run under ``no_grad`` (``keep_expert_graphs`` is the
    naive variant the memory benchmark compares against)."""

    trainable = ("diffusers",)

    def __init__(
        self,
        collab: Collaboration,
        cfg: Config,
        scale: float,
        keep_expert_graphs: bool = False,
        nulls: dict[str, torch.Tensor] | None = None,
    ):
        super().__init__()
        self.collab, self.diffusers, self.scale = collab, collab.diffusers, scale
        self.guidance, self.nulls = cfg.diffuser.train_guidance, nulls or {}
        if self.guidance != 1.0 and set(self.nulls) != set(collab.modalities):
            raise InputError("diffuser.train_guidance needs the null condition of every modality")
        self.keep_expert_graphs = keep_expert_graphs
        if keep_expert_graphs:  # the naive version: experts not frozen, their activations kept
            collab.experts.requires_grad_(True)
        self.register_buffer("alpha_bar", alphas_cumprod(cfg.diffusion).float(), persistent=False)

    def forward(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        mean, std = batch["mean"], batch["std"]
        B, dev = mean.shape[0], mean.device
        z0 = (mean + std * torch.randn(mean.shape, generator=generator, device=dev)) * self.scale
        t = torch.randint(0, len(self.alpha_bar), (B,), generator=generator, device=dev)
        eps = torch.randn(z0.shape, generator=generator, device=dev)
        z_t = q_sample(z0, t, eps, self.alpha_bar)
        raw = {m: batch[f"cond_{m}"] for m in self.collab.modalities}
        with torch.set_grad_enabled(self.keep_expert_graphs):
            conds = self.collab.encode(raw)
            if self.guidance == 1.0:
                eps_m = self.collab.expert_eps(z_t, t, conds)
            else:  # the guided predictions sampling will combine
                null = self.collab.encode({m: self.nulls[m].to(dev).expand_as(raw[m]) for m in raw})
                eps_m = [
                    guided(
                        lambda x, ts, c, m=m: self.collab.expert_eps(x, ts, {m: c}, [m])[0],
                        z_t,
                        t,
                        conds[m],
                        null[m],
                        self.guidance,
                    )
                    for m in self.collab.modalities
                ]
        weights = influence_weights(self.collab.logits(z_t, t, conds))
        loss = F.mse_loss(combine(eps_m, weights), eps)
        with torch.no_grad():  # what the plain average would score: the diffusers' gain over it
            avg = F.mse_loss(sum(eps_m) / len(eps_m), eps)
        logs = {"loss_average": avg.item()}
        for k, m in enumerate(self.collab.modalities):
            logs[f"w_{m}"] = weights[k].mean().item()
        return loss, logs


@dataclass
class DiffuserReport:
    out: Path
    steps: int
    wall_time_s: float
    samples_per_s: float
    parameters: dict[str, int]
    final_loss: float
    final_loss_average: float


def check_modalities(cfg: Config) -> list[str]:
    return modalities.check(cfg.diffuser.modalities)


def parameter_counts(cfg: Config) -> dict[str, int]:
    """Exact counts of the diffusers, built on the meta device (no memory)."""
    latent = cfg.data.resolution // 2 ** (len(cfg.vae.block_out_channels) - 1)
    with torch.device("meta"):  # the experts' extra input channels, as their encoders declare them
        encoders = {
            m: modalities.get(m).build_encoder(cfg.unimodal, latent, 8) for m in check_modalities(cfg)
        }
        extra = {m: e.extra_in for m, e in encoders.items() if e.extra_in}
        return DiffuserSet(cfg.diffuser, cfg.vae.latent_channels, latent, extra).parameter_counts()


def load_experts(run_dir: Path, mods: list[str], dtype: str = "float32") -> dict[str, UnimodalModel]:
    experts = {}
    for m in mods:
        require_stage(
            run_dir / m, f"train-unimodal-{m}", f"cdiff train-unimodal --modality {m} --run {run_dir}"
        )
        model, _ = store.load(run_dir / m, "unimodal")
        experts[m] = model.to(DTYPES[dtype])
    return experts


def build_diffusers(cfg: Config, experts: dict[str, UnimodalModel], latent_channels: int, latent_size: int):
    widths = {m: e.cfg.unet.cross_attention_dim for m, e in experts.items()}
    for m, w in widths.items():
        if w != cfg.diffuser.unet.cross_attention_dim:
            raise InputError(
                f"diffuser.unet.cross_attention_dim ({cfg.diffuser.unet.cross_attention_dim}) must equal the "
                f"{m} expert's token width ({w}); set --set diffuser.unet.cross_attention_dim={w}"
            )
    extra = {m: e.extra_in for m, e in experts.items() if e.extra_in}
    return DiffuserSet(cfg.diffuser, latent_channels, latent_size, extra), extra


def run(
    cfg: Config,
    run_dir: Path,
    data_dir: Path,
    out: Path,
    *,
    force: bool = False,
    resume: bool = False,
    log=print,
) -> DiffuserReport:
    stage = tc.TrainingOutput(out, force, resume)  # before any set-up: finished work is refused at once
    # 1. inputs: data, VAE, experts, latent cache
    mods = check_modalities(cfg)
    data = PreparedDataset.open(data_dir)
    vae_dir = tc.require_vae(run_dir)
    vae, vae_meta = store.load(vae_dir, "vae")
    experts = load_experts(run_dir, mods, cfg.diffuser.expert_dtype)
    res = vae_meta["resolution"]
    ctx = {
        m: Context(res, {"unimodal": cfg_mod.to_dict(e.cfg)}, data=data, run_dir=run_dir)
        for m, e in experts.items()
    }
    lat = latent_cache.load_or_encode(run_dir / "latents", data, vae_dir, "train", log=log)
    cond = {m: modalities.get(m).from_dataset(data, data.split("train"), ctx[m]) for m in mods}
    torch.manual_seed(cfg.diffuser.train.seed)  # the initial weights are part of a reproducible run
    diffusers, extra = build_diffusers(cfg, experts, vae_meta["latent_channels"], vae_meta["latent_size"])
    collab = Collaboration(experts, diffusers, mods)
    task = DiffuserTask(collab, cfg, vae_meta["scale_factor"], nulls=_training_nulls(cfg, experts, cond, ctx))
    partial = stage.begin(cfg)

    # 2-3. train, with collaborative validation grids
    val_ids = tc.preview_ids(data, GRID_CONDITIONS)
    val_cond = {m: modalities.get(m).from_dataset(data, val_ids, ctx[m]) for m in mods}

    def on_sample(step: int, t: Task) -> None:
        images = sc.preview_images(
            CollabPredictor(t.collab, "collaborative"), t.collab, vae, vae_meta, cfg, val_cond, len(val_ids)
        )
        _save_grid(stage.sample_path(step), data, val_ids, mods, images)

    dataset = MultiConditionedLatents(lat, cond)
    result = fit(task, dataset, cfg.diffuser.train, partial, resume=resume, on_sample=on_sample)

    # 4. export
    _export(partial, diffusers, vae_meta, extra, run_dir, mods)
    counts = diffusers.parameter_counts()
    final_loss = sc.last_metric(partial, "loss")
    final_avg = sc.last_metric(partial, "loss_average")
    inputs = tc.inputs(data_dir, data, {"vae": vae_dir, **{m: run_dir / m for m in mods}})
    metrics = {
        "steps": result.step,
        "final_loss": final_loss,
        "final_loss_average": final_avg,
        "samples_per_s": result.samples_per_s,
    }
    stage.finish("train-diffuser", cfg, inputs, tc.hashed(partial), metrics=metrics, parameters=counts)
    return DiffuserReport(
        out, result.step, stage.elapsed(), result.samples_per_s, counts, final_loss, final_avg
    )


def _export(
    partial: Path, diffusers: DiffuserSet, vae_meta: dict, extra: dict, run_dir: Path, mods: list[str]
) -> None:
    """The diffusers' weights and config, which names the experts' weights."""
    diffusers.eval()
    meta = {
        "latent_channels": vae_meta["latent_channels"],
        "latent_size": vae_meta["latent_size"],
        "extra_in": extra,
        "experts": {m: output_sha(run_dir / m, "model.safetensors") for m in mods},
    }
    store.save(partial, "diffuser", diffusers, diffuser_record(diffusers, meta))


def _training_nulls(cfg: Config, experts: dict[str, UnimodalModel], cond: dict, ctx: dict) -> dict | None:
    """Each modality's null condition, when the diffusers train on guided predictions."""
    if cfg.diffuser.train_guidance == 1.0:
        return None
    plain = [m for m, e in experts.items() if e.cfg.cond_dropout <= 0]
    if plain:
        raise InputError(
            f"diffuser.train_guidance needs experts trained with condition dropout; the {plain[0]} model was not"
        )
    return {m: modalities.get(m).null(cond[m], ctx[m]) for m in cond}


def _save_grid(
    path: Path, data: PreparedDataset, ids: list[str], mods: list[str], images: list[np.ndarray]
) -> None:
    """Rows of (each condition's picture, the source image, collaborative sample)."""
    size = images[0].shape[0]
    records = data.records()
    pictured = [m for m in mods if modalities.get(m).pictured]
    tiles: list[np.ndarray] = []
    for sample_id, im in zip(ids, images, strict=True):
        tiles += [modalities.get(m).source_tile(data, sample_id, size) for m in pictured]
        tiles += [data.image(sample_id), im]
    meta = {
        "layout": f"rows: the {', the '.join(pictured) or 'conditions'}, the source image, collaborative sample",
        "captions": [records[i]["caption"] for i in ids],
    }
    save_png(path, grid(tiles, ncol=2 * (len(pictured) + 2)), meta)


__all__ = ["DiffuserTask", "parameter_counts", "run"]
