"""The key mapping: released keys onto cdiff's parts (diffusers' LDM converters on shape-only refs)."""

from __future__ import annotations

import re
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

from cdiff.errors import InputError
from cdiff.models.official.layout import (
    DROP_LOGITS,
    DROP_LOSS,
    DROP_SCHEDULE,
    PREFIXES,
    SCHEDULE,
    VAE_PREFIX,
)


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
