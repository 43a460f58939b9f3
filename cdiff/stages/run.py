"""A run directory with its trained models: paths, ``require``, and each model loaded once.

``Run(root, device, dtype)`` loads the VAE, the experts and the dynamic diffusers on first use
and keeps them; the diffusion models run in ``dtype`` on ``device`` (the VAE always in float32).
Callers that change a model (an edit fine-tunes an expert's UNet) take a :meth:`Run.fresh_expert`.
"""

from __future__ import annotations

import copy
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from cdiff import modalities
from cdiff.data.prepared import PreparedDataset
from cdiff.errors import InputError
from cdiff.modalities import Context
from cdiff.models import store
from cdiff.models.collab import DiffuserSet
from cdiff.models.unimodal import UnimodalModel
from cdiff.rundir import output_sha, require_stage

STAGES = {"vae": "train-vae", "diffuser": "train-diffuser", "evaluator": "train-evaluator"}


def stage_of(part: str) -> str:
    """The stage whose output lives in ``RUN/part``."""
    return STAGES.get(part) or f"train-unimodal-{part}"


def command_of(part: str, root: Path) -> str:
    if part in STAGES:
        return f"cdiff {STAGES[part]} --run {root}"
    return f"cdiff train-unimodal --modality {part} --run {root}"


class Run:
    """The models of one run directory, loaded lazily and kept."""

    def __init__(
        self,
        root: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.root = Path(root)
        self.device, self.dtype = torch.device(device), dtype
        self._experts: dict[str, tuple[UnimodalModel, dict]] = {}
        self._contexts: dict[str, Context] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r}, device={str(self.device)!r}, dtype={self.dtype})"

    def path(self, part: str) -> Path:
        return self.root / part

    def has(self, part: str) -> bool:
        return (self.root / part / "manifest.json").is_file()

    def require(self, part: str) -> dict[str, Any]:
        """The manifest of the finished ``part``, or a one-line error naming the command that makes it."""
        return require_stage(self.root / part, stage_of(part), command_of(part, self.root))

    # ---- models ------------------------------------------------------------------------------

    @cached_property
    def _vae(self) -> tuple[Any, dict]:
        self.require("vae")
        return store.load(self.root / "vae", "vae", self.device)

    def vae(self) -> tuple[Any, dict]:
        """The VAE (float32, on the device) and its ``config.json`` record."""
        return self._vae

    def expert(self, m: str) -> tuple[UnimodalModel, dict]:
        """The frozen expert of modality ``m`` (in the run's dtype, on its device) and its record."""
        if m not in self._experts:
            modalities.get(m)
            self.require(m)
            model, meta = store.load(self.root / m, "unimodal")
            self._experts[m] = (model.to(self.device, self.dtype), meta)
        return self._experts[m]

    def fresh_expert(self, m: str) -> UnimodalModel:
        """A private float32 copy of the expert (for fine-tuning; the kept one is untouched)."""
        model, _ = self.expert(m)
        return copy.deepcopy(model).float()

    @cached_property
    def _diffusers(self) -> tuple[DiffuserSet, dict]:
        self.require("diffuser")
        diffusers, meta = store.load(self.root / "diffuser", "diffuser")
        for m in diffusers.modalities:
            sha = output_sha(self.root / m, "model.safetensors")
            if meta.get("experts", {}).get(m, sha) != sha:
                raise InputError(
                    f"the dynamic diffusers in {self.root / 'diffuser'} were trained with another {m} model; "
                    f"retrain them: cdiff train-diffuser --run {self.root} --force"
                )
        return diffusers.to(self.device, self.dtype), meta

    def diffusers(self) -> tuple[DiffuserSet, dict]:
        """The dynamic diffusers (checked against the experts they were trained with) and their record."""
        return self._diffusers

    def compile(self, mods: list[str], diffusers: bool) -> None:
        """``torch.compile`` the UNets of the experts of ``mods`` (and of the diffusers) in place, once:
        the same weights and results (to float rounding), compiled on their first call."""
        check_compiler(self.device)
        nets = [self.expert(m)[0].unet for m in mods]
        if diffusers:
            nets += [net.unet for net in self.diffusers()[0].nets.values()]
        for net in nets:
            if not getattr(net, "_cdiff_compiled", False):
                net.compile()
                net._cdiff_compiled = True

    @cached_property
    def _evaluator(self) -> tuple[Any, dict]:
        self.require("evaluator")
        return store.load(self.root / "evaluator", "evaluator", self.device)

    def evaluator(self) -> tuple[Any, dict]:
        """The evaluator models (:class:`cdiff.models.evaluator.Evaluator`, float32) and their record."""
        return self._evaluator

    def diffuser_modalities(self, default: list[str] | tuple[str, ...]) -> list[str]:
        """The modalities the run's diffusers combine (without diffusers: ``default``)."""
        path = self.root / "diffuser" / "config.json"
        if path.is_file():
            return list(json.loads(path.read_text())["diffuser"]["modalities"])
        return list(default)

    # ---- data and conditions -----------------------------------------------------------------

    @cached_property
    def data(self) -> PreparedDataset | None:
        """The run's prepared dataset, when it has one."""
        return PreparedDataset.open(self.root / "data") if (self.root / "data").is_dir() else None

    def context(self, m: str) -> Context:
        """What modality ``m`` needs to read values for this run's expert (kept, with its tokenizer)."""
        if m not in self._contexts:
            _, meta = self.expert(m)
            resolution = self.vae()[1]["resolution"]
            self._contexts[m] = Context(
                resolution, meta, self.root / m, data=self._data_if_any(), run_dir=self.root
            )
        return self._contexts[m]

    def _data_if_any(self) -> PreparedDataset | None:
        try:
            return self.data
        except InputError:
            return None

    def read(self, m: str, values: list[Any], notes: list[str]) -> torch.Tensor:
        """Raw condition rows of modality ``m`` for user values (paths, captions, arrays, ``val:<id>``)."""
        return modalities.get(m).read(values, self.context(m), notes)

    def null(self, m: str, like: torch.Tensor) -> torch.Tensor:
        return modalities.get(m).null(like, self.context(m))


__all__ = ["Run", "command_of", "stage_of"]


def check_compiler(device: torch.device) -> None:
    """``--compile`` needs a C++ compiler for CPU kernels (and Triton for GPU ones): one line when absent."""
    import shutil

    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise InputError("--compile needs a C++ compiler on the CPU (apt-get install g++); drop --compile")
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            raise InputError("--compile needs Triton on GPUs (pip install triton); drop --compile") from None
