"""Training checkpoints: the whole training state in one ``torch.save`` file, checked on resume.

A checkpoint holds tensors and plain data only (it loads with ``weights_only=True``), written
through a temp file and a rename, and carries ``"sha256"``: a hash of everything else in it (each
tensor's dtype, shape and bytes, each value), so a damaged file is refused on resume instead of
resuming from wrong weights. A checkpoint that no longer fits the model (the settings changed)
is refused in one line too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cdiff.errors import InputError


def save(
    acc, path: Path, step: int, elapsed: float, modules: dict[str, nn.Module], optimizer, scheduler, ema
) -> None:
    """The training state at ``step``, with the sha256 of its contents, through a temp file."""
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return
    state = {
        "step": step,
        "elapsed_s": elapsed,
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
    }
    state["sha256"] = _digest(state)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path: Path, modules: dict[str, nn.Module], optimizer, scheduler, ema) -> tuple[int, float]:
    """Restore the state :func:`save` wrote; ``(step, elapsed seconds)``."""
    state = _read(path)
    for name, module in modules.items():
        problem = _mismatch(module, state["modules"].get(name))
        if problem:
            raise InputError(
                f"{path} does not fit this model ({name}: {problem}): the settings changed since it "
                "was saved; start over with --force"
            )
        module.load_state_dict(state["modules"][name])
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        return int(state["step"]), float(state.get("elapsed_s", 0.0))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"{path} does not fit this run (its optimiser state: {type(exc).__name__}): the settings "
            "changed since it was saved; start over with --force"
        ) from None


def _read(path: Path) -> dict[str, Any]:
    """The checkpoint's state, its sha256 checked (checkpoints written before it had one: unchecked)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(
            f"{path} is damaged (it cannot be read: {type(exc).__name__}); start over with --force"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("modules"), dict):
        raise InputError(f"{path} is damaged (it holds no training state); start over with --force")
    recorded = state.pop("sha256", None)
    if recorded is not None and recorded != _digest(state):
        raise InputError(f"{path} is damaged (its contents do not match its sha256); start over with --force")
    return state


def _mismatch(module: nn.Module, saved: Any) -> str:
    """What keeps ``saved`` from loading into ``module`` ("" when nothing does)."""
    if not isinstance(saved, dict):
        return "not in the checkpoint"
    own = module.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    shapes = [k for k in own if k in saved and tuple(getattr(saved[k], "shape", ())) != tuple(own[k].shape)]
    out = []
    if missing:
        out.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if unexpected:
        out.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    if shapes:
        k = shapes[0]
        was, now = list(getattr(saved[k], "shape", ())), list(own[k].shape)
        out.append(f"{len(shapes)} wrong shape(s), e.g. {k} is {was} there, {now} here")
    return ", ".join(out)


def _digest(obj: Any) -> str:
    """A sha256 of a checkpoint's contents: every tensor's dtype, shape and bytes, and every value."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, list | tuple):
        h.update(f"{type(obj).__name__}{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def check_space(out: Path, task: torch.nn.Module) -> None:
    """Room for the checkpoints: the trainable weights, Adam's two moments and the EMA (4× the weights)."""
    from cdiff.outputs import check_free_space

    weights = sum(p.numel() * p.element_size() for p in task.parameters() if p.requires_grad)
    check_free_space(out, 4 * weights, "the training checkpoints")
