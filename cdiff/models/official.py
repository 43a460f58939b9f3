"""The authors' released checkpoints (REFERENCE.md §5): safe loading and the key mapping onto cdiff.

Loading. The files are PyTorch-Lightning pickles. :func:`load_checkpoint` reads them with
``torch.load(weights_only=True)``, which rebuilds only tensors and plain containers; the
Lightning classes inside (PL 1.4 keys the ModelCheckpoint callback's state by its class) become
inert stand-ins that run no code, and any other global (``os.system``, ...) is refused.
``trust_pickle=True`` is the explicit escape hatch: full unpickling, for files you trust.
Zip-format files are memory-mapped, so a tensor is read from disk only when it is used.

Mapping. The UNets and the VAE go through diffusers' own LDM conversion
(``convert_ldm_unet_checkpoint`` / ``convert_ldm_vae_checkpoint``), run on shape-only
references (:class:`Ref`) so that it yields key names without touching a tensor. The text
transformer (the release's x-transformers layout) and the mask Linear are mapped here.
:func:`plan_file` accounts for every key of a file: mapped to one target, or dropped for a
stated reason; anything else is an error.
"""

from __future__ import annotations

import pickle
import re
import types
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders.single_file_utils import (
    LDM_UNET_KEY,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)

from cdiff.config import DiffusionConfig
from cdiff.errors import InputError

KINDS = ("vae", "text", "mask", "codiff_mask_text")  # the released files: {res}_{kind}.ckpt
LIGHTNING = ("pytorch_lightning", "lightning", "lightning_fabric")  # training state, never used here
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


# ---- safe loading ---------------------------------------------------------------------------


class _Inert:
    """Stands in for a Lightning class in a checkpoint: keeps what it is given, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stand_in(qualname: str) -> type:
    module, _, name = qualname.rpartition(".")
    return type(name, (_Inert,), {"__module__": module, "__qualname__": name})


class _TrustingUnpickler(pickle.Unpickler):
    """Full unpickling (``--trust-pickle``), with stand-ins for Lightning so it need not be installed."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in LIGHTNING:
            return _stand_in(f"{module}.{name}")
        return super().find_class(module, name)


_TRUSTING = types.SimpleNamespace(__name__="pickle", Unpickler=_TrustingUnpickler, load=pickle.load)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _torch_load(path: Path, mmap: bool, trust_pickle: bool, allowed: list[tuple[type, str]]) -> Any:
    if trust_pickle:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=False, pickle_module=_TRUSTING)
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)


def load_checkpoint(path: Path, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, info)`` of a released checkpoint; ``info`` has ``global_step`` and the top-level keys."""
    if not path.is_file():
        raise InputError(f"{path} not found; give the folder with the released .ckpt files or the files")
    allowed: list[tuple[type, str]] = []
    mmap = True
    while True:
        try:
            obj = _torch_load(path, mmap, trust_pickle, allowed)
            break
        except pickle.UnpicklingError as exc:
            name = next(iter(_GLOBAL.findall(str(exc))), None)
            if name and name.split(".")[0] in LIGHTNING and len(allowed) < 32:
                allowed.append((_stand_in(name), name))  # inert: its state is never used
                continue
            if name is None:
                raise _corrupt(path, exc) from None
            raise InputError(
                f"{path} needs the Python global {name} to load, which could run arbitrary code, so cdiff "
                "refuses it; if you trust where the file comes from, rerun with --trust-pickle"
            ) from None
        except RuntimeError as exc:
            if mmap and "mmap can only be used" in str(exc):
                mmap = False  # a legacy (non-zip) file: read it whole
                continue
            raise _corrupt(path, exc) from None
        except (EOFError, OSError, ValueError, KeyError, AttributeError, ImportError) as exc:
            raise _corrupt(path, exc) from None
    return _state_dict(path, obj)


def _corrupt(path: Path, exc: BaseException) -> InputError:
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return InputError(f"{path} is not a readable PyTorch checkpoint ({detail}); download it again")


def _state_dict(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], dict]:
    """A Lightning checkpoint's ``state_dict`` (or a bare state dict), checked to hold tensors only."""
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(
            f"{path} holds no state_dict of tensors; is it one of the released .ckpt files (REFERENCE.md §5)?"
        )
    info = {"global_step": obj.get("global_step"), "top_level_keys": sorted(map(str, obj))}
    if not isinstance(info["global_step"], int):
        info["global_step"] = None
    return sd, info


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


# ---- key mapping ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A tensor's stand-in while diffusers' converters rename keys: its source key and shape."""

    key: str
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index: Any) -> Ref:  # only [:, :, 0] / [:, :, 0, 0]: a 1×1 conv → a linear
        return Ref(self.key, self.shape[:2])


def unet_names(shapes: dict[str, tuple[int, ...]], prefix: str, layers_per_block: int) -> dict[str, Ref]:
    """diffusers ``UNet2DConditionModel`` key → the LDM UNet key under ``prefix``."""
    refs = {LDM_UNET_KEY + k[len(prefix) :]: Ref(k, s) for k, s in shapes.items() if k.startswith(prefix)}
    return convert_ldm_unet_checkpoint(refs, {"layers_per_block": layers_per_block})


def vae_names(shapes: dict[str, tuple[int, ...]], prefix: str, levels: int) -> dict[str, Ref]:
    """diffusers ``AutoencoderKL`` key → the LDM VAE key under ``prefix`` (attention 1×1 convs → linears)."""
    refs = {
        VAE_PREFIX + k[len(prefix) :]: Ref(k, s)
        for k, s in shapes.items()
        if k.startswith(prefix) and not k[len(prefix) :].startswith("loss.")
    }
    return convert_ldm_vae_checkpoint(
        refs, {"down_block_types": [None] * levels, "up_block_types": [None] * levels}
    )


_TEXT = [  # x-transformers (the release's vendored copy) → cdiff TextEncoder; layers 2i: attention, 2i+1: FF
    (re.compile(r"token_emb\.weight"), lambda m: "token_emb.weight"),
    (re.compile(r"pos_emb\.emb\.weight"), lambda m: "pos_emb.weight"),
    (re.compile(r"norm\.(weight|bias)"), lambda m: f"norm.{m[1]}"),
    (re.compile(r"to_logits\.(weight|bias)"), lambda m: f"to_logits.{m[1]}"),
    (
        re.compile(r"attn_layers\.layers\.(\d+)\.0\.(weight|bias)"),
        lambda m: f"blocks.{int(m[1]) // 2}.norm{int(m[1]) % 2 + 1}.{m[2]}",
    ),
    (
        re.compile(r"attn_layers\.layers\.(\d*[02468])\.1\.(to_q|to_k|to_v|to_out)\.(weight|bias)"),
        lambda m: f"blocks.{int(m[1]) // 2}.attn.{m[2]}.{m[3]}",
    ),
    (
        re.compile(r"attn_layers\.layers\.(\d*[13579])\.1\.net\.(0\.0|2)\.(weight|bias)"),
        lambda m: f"blocks.{int(m[1]) // 2}.ff.{m[2][0]}.{m[3]}",
    ),
]


def text_names(shapes: dict[str, tuple[int, ...]], prefix: str) -> dict[str, Ref]:
    """cdiff ``TextEncoder`` key → the release's text transformer key under ``prefix``."""
    out = {}
    for k, s in shapes.items():
        if not k.startswith(prefix):
            continue
        for pattern, target in _TEXT:
            if m := pattern.fullmatch(k[len(prefix) :]):
                out[target(m)] = Ref(k, s)
                break
    return out


def mask_names(shapes: dict[str, tuple[int, ...]], prefix: str) -> dict[str, Ref]:
    """cdiff ``MaskEncoder`` key → the release's ``SegMaskEncoder`` key (one Linear 1024 → 640)."""
    return {
        f"linear.{p}": Ref(prefix + f"linear.{p}", shapes[prefix + f"linear.{p}"])
        for p in ("weight", "bias")
        if prefix + f"linear.{p}" in shapes
    }


@dataclass
class FilePlan:
    """Where every key of one file goes: ``parts[part][target key] = Ref``, or ``dropped[key] = reason``."""

    kind: str
    parts: dict[str, dict[str, Ref]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)


def plan_file(
    path: Path,
    kind: str,
    shapes: dict[str, tuple[int, ...]],
    vae_levels_expected: int,
    unet_layers: int,
    diffuser_layers: int,
    keep_logits: bool = False,
) -> FilePlan:
    """Map every key of a released file onto cdiff's parts; fail on any key left over.

    Parts: ``vae`` (AutoencoderKL keys), ``text`` / ``mask`` (UnimodalModel keys ``unet.*``,
    ``encoder.*``), ``diffuser`` (DiffuserSet.nets keys ``<modality>.unet.*``).
    """
    plan = FilePlan(kind)
    for prefix, part in PREFIXES[kind].items():
        if part == "vae":
            names = vae_names(shapes, prefix, vae_levels_expected)
            plan.parts["vae"] = names
            plan.dropped |= {k: DROP_LOSS for k in shapes if k.startswith(prefix + "loss.")}
        elif part.endswith(".unet"):
            names = unet_names(shapes, prefix, unet_layers)
            plan.parts.setdefault(part.split(".")[0], {}).update({f"unet.{k}": r for k, r in names.items()})
        elif part.startswith("diffuser."):
            names = unet_names(shapes, prefix, diffuser_layers)
            m = part.split(".")[1]
            plan.parts.setdefault("diffuser", {}).update({f"{m}.unet.{k}": r for k, r in names.items()})
        else:
            m = part.split(".")[0]
            names = text_names(shapes, prefix) if m == "text" else mask_names(shapes, prefix)
            if not keep_logits:
                plan.dropped |= {
                    names.pop(k).key: DROP_LOGITS for k in list(names) if k.startswith("to_logits.")
                }
            plan.parts.setdefault(m, {}).update({f"encoder.{k}": r for k, r in names.items()})
    plan.dropped |= {k: DROP_SCHEDULE for k in SCHEDULE if k in shapes}
    for part, refs in plan.parts.items():
        missing = [t for t, r in refs.items() if r is None]
        if missing:
            raise InputError(f"{path} lacks the {part} weights for {missing[0]}; is the file complete?")
    used = Counter(r.key for refs in plan.parts.values() for r in refs.values())
    twice = sorted(k for k, n in used.items() if n > 1)
    if twice:
        raise InputError(f"{path}: key {twice[0]} maps onto two weights; is it a released checkpoint?")
    left = [k for k in shapes if k not in used and k not in plan.dropped]
    if left:
        raise InputError(
            f"{path}: {len(left)} keys are not part of the released {kind} layout (first: {left[0]}); "
            "is it a released checkpoint?"
        )
    return plan


def check_shapes(
    path: Path, part: str, refs: dict[str, Ref], target: dict[str, torch.Size], fix: str
) -> None:
    """Every target key filled once, with the target's shape."""
    missing = sorted(set(target) - set(refs))
    if missing:
        raise InputError(f"{path} lacks the {part} weight {missing[0]} ({len(missing)} missing); {fix}")
    extra = sorted(set(refs) - set(target))
    if extra:
        raise InputError(f"{path}: {refs[extra[0]].key} has no place in cdiff's {part} model; {fix}")
    for k, ref in refs.items():
        if tuple(ref.shape) != tuple(target[k]):
            raise InputError(
                f"{path}: {ref.key} has shape {list(ref.shape)}, cdiff's {part} needs {list(target[k])}; {fix}"
            )


# ---- the schedule ---------------------------------------------------------------------------


def ldm_schedule(cfg: DiffusionConfig) -> dict[str, torch.Tensor]:
    """LatentDiffusion's schedule buffers for ``cfg`` (linear-in-sqrt betas, v_posterior = 0), float64."""
    betas = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, cfg.timesteps, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    prev = torch.cat([ac.new_ones(1), ac[:-1]])
    post_var = betas * (1 - prev) / (1 - ac)
    return {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / ac - 1).sqrt(),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1 - ac),
        "posterior_mean_coef2": (1 - prev) * (1 - betas).sqrt() / (1 - ac),
    }


def check_schedule(path: Path, sd: dict[str, torch.Tensor], cfg: DiffusionConfig) -> int:
    """The file's schedule buffers equal cdiff's (float32 precision); returns how many were checked."""
    ours = ldm_schedule(cfg)
    checked = 0
    for name in SCHEDULE:
        if name not in sd:
            continue
        theirs = sd[name].double()
        if theirs.shape != ours[name].shape or not torch.allclose(theirs, ours[name], rtol=1e-5, atol=1e-8):
            raise InputError(
                f"{path}: its {name} differ from cdiff's schedule (T={cfg.timesteps}, beta {cfg.beta_start}"
                f"..{cfg.beta_end}); set --set diffusion.* to the file's schedule"
            )
        checked += 1
    return checked


def convert(sd: dict[str, torch.Tensor], refs: dict[str, Ref]) -> dict[str, torch.Tensor]:
    """The target state dict: views of the source tensors (no copy), 1×1 convs reshaped to linears."""
    return {k: sd[r.key].reshape(r.shape).contiguous() for k, r in refs.items()}


def same_weights(
    sd_a: dict[str, torch.Tensor],
    refs_a: dict[str, Ref],
    sd_b: dict[str, torch.Tensor],
    refs_b: dict[str, Ref],
) -> bool:
    """Two files hold the same part (tensor by tensor, so only one pair is read at a time)."""
    return refs_a.keys() == refs_b.keys() and all(
        torch.equal(
            sd_a[refs_a[k].key].reshape(refs_a[k].shape), sd_b[refs_b[k].key].reshape(refs_b[k].shape)
        )
        for k in refs_a
    )


__all__: list[str] = [
    "KINDS",
    "FilePlan",
    "Ref",
    "check_schedule",
    "check_shapes",
    "convert",
    "file_kind",
    "ldm_schedule",
    "load_checkpoint",
    "plan_file",
    "same_weights",
    "text_names",
    "unet_names",
    "vae_levels",
    "vae_names",
]
