"""Safe loading of the released PyTorch-Lightning pickles: tensors and plain containers, inert stand-ins."""

from __future__ import annotations

import pickle
import re
import types
from pathlib import Path
from typing import Any

import torch

from cdiff.errors import InputError

LIGHTNING = ("pytorch_lightning", "lightning", "lightning_fabric")  # training state, never used here


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
    _check_views(path, sd)
    info = {"global_step": obj.get("global_step"), "top_level_keys": sorted(map(str, obj))}
    if not isinstance(info["global_step"], int):
        info["global_step"] = None
    return sd, info


def _check_views(path: Path, sd: dict[str, torch.Tensor]) -> None:
    """Refuse tensors that claim more elements than their stored bytes (stride-0 or overlapping views):
    copying one would expand a small file into any amount of memory. Nothing is materialised here."""
    for key, t in sd.items():
        stored = t.untyped_storage().nbytes()
        if t.numel() * t.element_size() > stored or t.storage_offset() * t.element_size() > stored:
            shape = "×".join(map(str, t.shape))
            raise InputError(
                f"{path}: tensor {key} claims shape {shape} with strides {tuple(t.stride())} over {stored:,} bytes "
                "of data (an expanded view, not a saved weight); the file is malformed, download it again"
            )
