"""Where inference runs: ``--device auto|cpu|cuda|cuda:N|mps`` and ``--dtype float32|bfloat16|float16``.

Seeds do not depend on the device: every image's noise is drawn on a CPU generator and then
moved (:func:`cdiff.diffusion.sampling.seeded_noise`), so a seed gives the same start noise on
any device; the images agree to the device's float rounding.
"""

from __future__ import annotations

import re

import torch

from cdiff.errors import InputError
from cdiff.processes import local_index, world_size

DEVICES = "auto, cpu, cuda, cuda:N or mps"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → CUDA when available (in a job of several processes, GPU ``LOCAL_RANK``), else Apple's
    MPS when available, else the CPU.

    A device that is not there is an :class:`InputError` naming the ones that are.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            if world_size() > 1:  # one GPU per process of an accelerate/torchrun job (LOCAL_RANK)
                return torch.device("cuda", local_index() % torch.cuda.device_count())
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", name):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise InputError(f"--device {name}: this machine has {have}; use --device cpu or --device auto")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise InputError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    raise InputError(f"unknown --device '{name}'; choose {DEVICES}")


def resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The inference dtype of the diffusion models (the VAE decodes in float32 whatever it is)."""
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise InputError(f"unsupported dtype {name}; choose {', '.join(DTYPES)}")
        return name
    name = name or "float32"
    if name not in DTYPES:
        raise InputError(f"unknown --dtype '{name}'; choose {', '.join(DTYPES)}")
    if name == "float16" and device.type == "cpu":
        raise InputError("--dtype float16 is for GPUs (CPU kernels for it are slow or missing); use bfloat16")
    return DTYPES[name]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
