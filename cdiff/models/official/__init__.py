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

The package: :mod:`~cdiff.models.official.layout` (the files' kinds and key prefixes),
:mod:`~cdiff.models.official.loading` (safe loading), :mod:`~cdiff.models.official.mapping`
(the key mapping, shape checks, conversion) and :mod:`~cdiff.models.official.schedule`.
"""

from __future__ import annotations

from cdiff.models.official.layout import (
    DROP_LOGITS,
    DROP_LOSS,
    DROP_SCHEDULE,
    KINDS,
    PREFIXES,
    SCHEDULE,
    VAE_PREFIX,
    file_kind,
    vae_levels,
)
from cdiff.models.official.loading import LIGHTNING, load_checkpoint
from cdiff.models.official.mapping import (
    FilePlan,
    Ref,
    check_shapes,
    convert,
    mask_names,
    plan_file,
    same_weights,
    text_names,
    unet_names,
    vae_names,
)
from cdiff.models.official.schedule import check_schedule, ldm_schedule

__all__: list[str] = [
    "DROP_LOGITS",
    "DROP_LOSS",
    "DROP_SCHEDULE",
    "KINDS",
    "LIGHTNING",
    "PREFIXES",
    "SCHEDULE",
    "VAE_PREFIX",
    "FilePlan",
    "Ref",
    "check_schedule",
    "check_shapes",
    "convert",
    "file_kind",
    "ldm_schedule",
    "load_checkpoint",
    "mask_names",
    "plan_file",
    "same_weights",
    "text_names",
    "unet_names",
    "vae_levels",
    "vae_names",
]
