"""The configuration's dataclass schemas (one per stage or model) and the sampling settings' checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from cdiff.errors import InputError

Source = Literal["synthetic", "celeba", "codiff"]
TokenizerKind = Literal["wordpiece", "bert-base-uncased"]


@dataclass
class SketchConfig:
    """How ``cdiff prepare`` makes each sample's sketch (:mod:`cdiff.data.sketches`): a synthetic face's
    own geometry; a photo's edges, by the detector below on the image at the prepared resolution."""

    detector: Literal["canny"] = "canny"  # scikit-image's Canny on the grey image
    sigma: float = 1.0  # its Gaussian's width (pixels at the prepared resolution)
    low: float = 0.08  # hysteresis thresholds on the gradient of grey levels in [0, 1]
    high: float = 0.2
    line_width: int = 1  # pixels; user drawings are thinned and widened to it


@dataclass
class DataConfig:
    """What ``cdiff prepare`` builds: the dataset every later stage reads."""

    source: Source = "synthetic"
    resolution: int = 64  # images and masks are stored at resolution x resolution
    seed: int = 0  # synthetic generator seed
    num: int = 4000  # synthetic: number of samples (ids 0..num-1)
    val_count: int | None = None  # the last val_count ids (in id order) form the validation split...
    val_fraction: float = 0.1  # ...or, when val_count is null, this fraction of them
    image_format: Literal["png", "jpg"] = "png"
    jpeg_quality: int = 95
    # real data (source=celeba): CelebA-HQ images, CelebAMask-HQ masks, CelebA-Dialog captions
    celebahq: str | None = None  # folder with <n>.jpg (or its parent holding CelebA-HQ-img/)
    masks: str | None = None  # CelebAMask-HQ-mask-anno/ (per-part) or a folder of combined <n>.png
    captions: str | None = None  # CelebA-Dialog captions_hq.json
    attributes: str | None = None  # optional CelebA-Dialog fine-grained degrees table
    hq_mapping: str | None = None  # optional CelebA-HQ-to-CelebA-mapping.txt (attribute keys by CelebA name)
    # released preprocessed layout (source=codiff)
    root: str | None = None  # the release's datasets/ folder
    # tokenizer for the text modality, saved with the dataset
    tokenizer: TokenizerKind = "wordpiece"
    tokenizer_path: str | None = None  # local bert-base-uncased folder (vocab.txt); else the HF cache
    vocab_size: int = 1000  # wordpiece: upper bound on the learned vocabulary
    max_length: int = 77  # tokens per caption (padded/truncated), as the release
    workers: int = 0  # processes for prepare; 0 = all cores
    sketch: SketchConfig = field(default_factory=SketchConfig)  # each sample's line drawing


MixedPrecision = Literal["no", "bf16", "fp16"]


@dataclass
class TrainConfig:
    """The shared training loop's settings (every training stage has its own copy)."""

    steps: int = 1000  # optimiser steps (each = batch_size * grad_accum samples)
    minutes: float | None = None  # wall-clock budget; stops (with a checkpoint) when reached
    batch_size: int = 32  # per process
    grad_accum: int = 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    ema_decay: float | None = None  # e.g. 0.999; EMA weights are exported when on
    mixed_precision: MixedPrecision = "no"
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 25
    seed: int = 0


@dataclass
class VAEConfig:
    """KL autoencoder (diffusers AutoencoderKL) and its loss (seed eq. 1)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512)  # 3 levels: f = 4; 4 levels: f = 8
    layers_per_block: int = 2
    latent_channels: int = 3
    norm_num_groups: int = 32
    perceptual_weight: float = 1.0  # VGG16 perceptual term; 0 turns it off (no VGG weights needed)
    vgg_weights: str | None = None  # torchvision vgg16 weights file; default: the torch hub cache
    kl_weight: float = 1.0e-6
    disc_weight: float = 0.0  # PatchGAN hinge discriminator (the release: 0.5 after 50,001 steps)
    disc_start: int = 50001
    logvar_init: float = 0.0  # initial bias of the posterior log-variance (negative: faster start)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class UNetConfig:
    """diffusers UNet2DConditionModel, described the way the paper does."""

    block_out_channels: tuple[int, ...] = (192, 384, 576, 960)
    layers_per_block: int = 2
    attention: tuple[bool, ...] = (False, True, True, True)  # cross-attention per level
    heads: int = 32  # attention heads (diffusers: attention_head_dim)
    transformer_depth: int = 1
    cross_attention_dim: int = 640
    norm_num_groups: int = 32
    time_injection: Literal["additive", "adaln"] = "additive"
    out_channels: int | None = None  # default: the latent channels
    zero_out: bool = False  # zero-initialise the output convolution
    global_condition: bool = (
        False  # demo option: attention-pooled condition tokens added to the time embedding
    )


@dataclass
class DiffusionConfig:
    """The LDM schedule: beta_t = linspace(sqrt(0.0015), sqrt(0.0195), T)^2, epsilon-prediction."""

    timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195


@dataclass
class TextEncoderConfig:
    """Pre-LN transformer over caption tokens (paper: 32 layers, width 640, 8 heads x 64)."""

    vocab_size: int | None = None  # None: the prepared tokenizer's size (30,522 for BERT's)
    max_length: int = 77
    width: int = 640
    depth: int = 32
    heads: int = 8
    head_dim: int = 64
    ff_mult: int = 4
    output_layer: bool = False  # the release's unused width→vocab logits layer (19.6M at paper scale)


@dataclass
class UnimodalConfig:
    """A uni-modal latent diffusion model: UNet + its condition encoder, trained jointly."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    mask_tokens: int = 32  # r: the one-hot mask is r x r, flattened to [19, r*r]
    mask_concat: bool = False  # demo option: also concatenate the one-hot mask to the UNet input
    sketch_grid: int = 16  # g: the sketch is cut into g x g patches, one token each
    sketch_patch: int = 16  # p: each patch is p x p pixels of the sketch area-resized to g*p
    sketch_concat: bool = False  # demo option: also concatenate the sketch at latent size to the UNet input
    cond_dropout: float = 0.0  # probability of the null condition (> 0 enables guidance)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30 % slower
    snr_gamma: float | None = None  # Min-SNR-gamma loss weighting (e.g. 5); None = plain MSE (the paper)
    train: TrainConfig = field(default_factory=TrainConfig)


def _diffuser_unet() -> UNetConfig:
    return UNetConfig(
        block_out_channels=(32, 64, 96, 160),
        heads=32,
        time_injection="adaln",
        out_channels=1,
        zero_out=True,
    )


@dataclass
class DiffuserConfig:
    """Dynamic diffusers (seed §A.1): one small UNet per modality predicting influence logits I_m.

    Each sees the noisy latent, the timestep and its own modality's condition tokens (from the
    frozen expert's encoder) by cross-attention; its output convolution starts at zero, so
    training starts from the plain average of the experts. ``unet.cross_attention_dim`` must
    equal the experts' token width; ``out_channels`` and ``zero_out`` are always 1 and true.
    """

    modalities: tuple[str, ...] = ("mask", "text")  # any number >= 2 of the trained experts
    unet: UNetConfig = field(default_factory=_diffuser_unet)
    expert_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # the frozen experts' weights
    # the experts' classifier-free guidance while the diffusers train: set it to sample.guidance so that the
    # diffusers learn to weigh the predictions they will weigh when sampling (1 = unguided, the paper)
    train_guidance: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class EditConfig:
    """Imagic editing of real images (seed §A.2, REFERENCE.md §3); the release's settings by default."""

    embed_steps: int = 500  # optimise the condition embedding to reconstruct the input
    embed_lr: float = 1.0e-3
    finetune_steps: int = 1000  # then fine-tune the UNet with that embedding fixed
    finetune_lr: float = 1.0e-6
    batch: int = 1  # noise draws (t, eps) per optimisation step (the release: 1)
    alphas: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
    collab_alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)  # both targets: one alpha for both


@dataclass
class EvaluatorConfig:
    """The evaluator models ``cdiff evaluate`` scores with: a face parser and an attribute classifier.

    Both train together on the prepared training split with flips (left/right classes swapped),
    colour jitter, blur and noise; and, when the run has a VAE, on its reconstructions of the
    training images too: every generated image is decoded by that VAE, so the judges must read
    decoded images as well as real ones.
    """

    parser_channels: tuple[int, ...] = (32, 64, 128)  # a small U-Net, 19-class logits per pixel
    parser_size: int = 128  # the parser's input size (images are resized; logits come back at full size)
    classifier_channels: tuple[int, ...] = (32, 64, 128, 256)  # strided conv net, pooled features
    classifier_size: int = 128
    augment: bool = True
    reconstructed: float = 0.5  # share of training images replaced by the run's VAE reconstruction of them
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class EvaluateConfig:
    """``cdiff evaluate``: validation condition pairs (the mask of one face, the caption of another)."""

    pairs: int = 100  # N validation pairs, one image per pair and method (seed + pair index)
    methods: tuple[str, ...] = (
        "all",
    )  # all: every method the run has models for (collaborative-released not)
    seed: int = 0
    fid_images: int = 50  # the paper's FID protocol: 50 images (also reported at N)
    examples: int = 8  # sample rows per method in the HTML report


@dataclass
class SampleConfig:
    """Sampling settings (the release: DDIM, 50 steps, eta 1.0, no guidance; its re-weighting is an option).

    The one place the sampling options are declared: ``generate``, ``edit``, ``evaluate`` and the
    Python API all map their options straight onto these keys, and :func:`check_sample` validates them.
    """

    steps: int = 50  # 1 .. T-1 for DDIM (its timesteps are offset by one), 1 .. T for DPM-Solver++
    eta: float = 1.0  # DDIM's noise (0: deterministic); DPM-Solver++ ignores it
    guidance: float = 1.0  # classifier-free guidance scale; 1 = none
    batch_size: int = 8  # images per forward pass (results do not depend on it)
    solver: Literal["ddim", "dpm"] = "ddim"  # DDIM (the release) or DPM-Solver++ (2M)
    reweight: Literal["none", "released"] = "none"  # the release's inference-only mask/text schedule
    influence_every: int = 1  # run the dynamic diffusers every k steps, reusing their maps between
    weights: tuple[float, ...] | None = None  # composable: fixed weights per modality (None: equal)
    compile: bool = False  # torch.compile the experts and diffusers (pays off over many images)


def check_sample(s: SampleConfig, timesteps: int) -> list[str]:
    """Validate the sampling settings against a schedule of ``timesteps`` steps; return notes.

    Raises :class:`InputError` (one line, naming the option) for anything out of range.
    """
    top = timesteps - 1 if s.solver == "ddim" else timesteps
    if not 1 <= s.steps <= top:
        raise InputError(
            f"--steps must be between 1 and {top} for the {s.solver} solver (T = {timesteps}), got {s.steps}"
        )
    if not math.isfinite(s.eta) or s.eta < 0:
        raise InputError(f"--eta must be a finite number >= 0 (0: deterministic DDIM), got {s.eta}")
    if not math.isfinite(s.guidance):
        raise InputError(f"--guidance must be a finite number (1: no guidance), got {s.guidance}")
    if s.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {s.batch_size}")
    if s.influence_every < 1:
        raise InputError(f"--influence-every must be at least 1, got {s.influence_every}")
    if s.weights is not None and not all(math.isfinite(w) for w in s.weights):
        raise InputError(f"--weights must be finite numbers, got {', '.join(map(str, s.weights))}")
    if s.solver == "dpm" and s.eta != SampleConfig.eta and s.eta != 0:
        return [f"DPM-Solver++ is deterministic: eta {s.eta:g} is ignored (it applies to --solver ddim)"]
    return []


@dataclass
class Config:
    """The whole pipeline's configuration."""

    name: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    unimodal: UnimodalConfig = field(default_factory=UnimodalConfig)
    diffuser: DiffuserConfig = field(default_factory=DiffuserConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
