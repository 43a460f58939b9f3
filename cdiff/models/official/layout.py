"""The released files' layout: their kinds, key prefixes per part, what is dropped and why."""

from __future__ import annotations

from pathlib import Path

from cdiff.errors import InputError

KINDS = ("vae", "text", "mask", "codiff_mask_text")  # the released files: {res}_{kind}.ckpt
SCHEDULE = (  # LatentDiffusion's registered schedule buffers
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
VAE_PREFIX = "first_stage_model."
# file kind → {key prefix: part}; parts: vae, <modality>.unet / <modality>.encoder, diffuser.<modality>
PREFIXES: dict[str, dict[str, str]] = {
    "vae": {"": "vae"},
    "text": {
        VAE_PREFIX: "vae",
        "model.diffusion_model.": "text.unet",
        "cond_stage_model.transformer.": "text.encoder",
    },
    "mask": {VAE_PREFIX: "vae", "model.diffusion_model.": "mask.unet", "cond_stage_model.": "mask.encoder"},
    "codiff_mask_text": {
        VAE_PREFIX: "vae",
        "model.seg_mask_unet.diffusion_model.": "mask.unet",
        "model.text_unet.diffusion_model.": "text.unet",
        "cond_stage_model.seg_mask_cond_stage_model.": "mask.encoder",
        "cond_stage_model.text_cond_stage_model.transformer.": "text.encoder",
        "model.seg_mask_confidence_predictor.diffusion_model.": "diffuser.mask",
        "model.text_confidence_predictor.diffusion_model.": "diffuser.text",
    },
}
DROP_LOSS = "the VAE's training losses (LPIPS, PatchGAN discriminator): not used at inference"
DROP_SCHEDULE = "diffusion schedule buffers: checked equal to cdiff's schedule"
DROP_LOGITS = "the text encoder's output layer: the release's encoder never uses it"


def file_kind(path: Path, keys: set[str]) -> str:
    """Which released file this is, from its keys (not its name)."""
    if "model.text_unet.diffusion_model.time_embed.0.weight" in keys:
        return "codiff_mask_text"
    if "cond_stage_model.transformer.token_emb.weight" in keys:
        return "text"
    if "cond_stage_model.linear.weight" in keys:
        return "mask"
    if "encoder.conv_in.weight" in keys:
        return "vae"
    raise InputError(
        f"{path} is not one of the released checkpoints ({', '.join(k + '.ckpt' for k in KINDS)}): "
        "none of their keys is in it"
    )


def vae_levels(shapes: dict[str, tuple[int, ...]], prefix: str) -> int:
    """Resolution levels of the VAE in a file (3: the 256 px release, 4: the 512 px one)."""
    return len({k[len(prefix) :].split(".")[2] for k in shapes if k.startswith(prefix + "encoder.down.")})
