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
from cdiff.config.schema import DiffuserConfig
from cdiff.data.prepared import PreparedDataset
from cdiff.errors import InputError
from cdiff.modalities import Context
from cdiff.models import store
from cdiff.models.collab import DiffuserSet
from cdiff.models.unimodal import UnimodalModel
from cdiff.rundir import output_sha, require_stage

STAGES = {"vae": "train-vae", "diffuser": "train-diffuser", "evaluator": "train-evaluator"}
DIFFUSER = "diffuser"  # RUN/diffuser: the set of the default pair; every other set RUN/diffuser-<names>
DEFAULT_SET = DiffuserConfig().modalities  # the paper's pair (mask, text): diffuser.modalities' default


def set_name(mods: list[str] | tuple[str, ...]) -> str:
    """A diffuser set's name: its modalities in alphabetical order, joined by '-' (``mask-sketch-text``)."""
    return "-".join(sorted(mods))


def set_part(mods: list[str] | tuple[str, ...]) -> str:
    """Where the diffuser set of ``mods`` lives: ``diffuser`` (the default pair) or ``diffuser-<set_name>``."""
    return DIFFUSER if sorted(mods) == sorted(DEFAULT_SET) else f"{DIFFUSER}-{set_name(mods)}"


def stage_of(part: str) -> str:
    """The stage whose output lives in ``RUN/part``."""
    if part.startswith(DIFFUSER + "-"):
        return STAGES[DIFFUSER]
    return STAGES.get(part) or f"train-unimodal-{part}"


def command_of(part: str, root: Path) -> str:
    if part.startswith(DIFFUSER + "-"):
        return f"cdiff train-diffuser --modalities {part.removeprefix(DIFFUSER + '-').replace('-', ',')} --run {root}"
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
        self._diffuser_sets: dict[str, tuple[DiffuserSet, dict]] = {}
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

    def diffuser_sets(self) -> dict[str, list[str]]:
        """The run's trained diffuser sets: ``{folder: modalities}`` (``diffuser`` first, then by size and name)."""
        sets = {}
        for folder in sorted(self.root.glob(DIFFUSER + "*")):
            record = folder / "config.json"
            if (folder / "manifest.json").is_file() and record.is_file():
                try:
                    sets[folder.name] = list(json.loads(record.read_text())["diffuser"]["modalities"])
                except (ValueError, KeyError, TypeError):
                    continue  # a damaged record: loading the set names the fix
        order = sorted(sets, key=lambda k: (k != DIFFUSER, len(sets[k]), k))
        return {k: sets[k] for k in order}

    def diffuser_part(self, mods: list[str] | tuple[str, ...] | None = None) -> str:
        """The folder of the diffuser set combining ``mods`` (None: ``diffuser``, else the run's only set)."""
        sets = self.diffuser_sets()
        if mods is None:
            if DIFFUSER in sets or not sets:
                return DIFFUSER
            if len(sets) == 1:
                return next(iter(sets))
            raise InputError(
                f"{self.root} has several diffuser sets ({', '.join(set_name(v) for v in sets.values())}); "
                "choose one with --modalities (e.g. --modalities "
                + ",".join(sorted(next(iter(sets.values()))))
                + ")"
            )
        for part, found in sets.items():
            if sorted(found) == sorted(mods):
                return part
        part = set_part(mods)
        if part in sets:  # a run from before sets were named by their modalities
            raise InputError(
                f"{self.root / part} holds the diffusers of {', '.join(sets[part])}, not {', '.join(mods)}; "
                f"move it to {self.root / set_part(sets[part])}"
            )
        return part

    def has_set(self, mods: list[str] | tuple[str, ...]) -> bool:
        """True when the run has a finished diffuser set combining ``mods``."""
        return any(sorted(found) == sorted(mods) for found in self.diffuser_sets().values())

    def diffuser_modalities(
        self, default: list[str] | tuple[str, ...], mods: list[str] | tuple[str, ...] | None = None
    ) -> list[str]:
        """The modalities of the diffuser set for ``mods`` (see :meth:`diffuser_part`) in their trained
        order (``mods`` itself, or without any diffusers ``default``, when the run has no such set)."""
        sets = self.diffuser_sets()
        part = self.diffuser_part(mods)
        if part in sets:
            return sets[part]
        return list(mods if mods is not None else default)

    def diffusers(self, mods: list[str] | tuple[str, ...] | None = None) -> tuple[DiffuserSet, dict]:
        """The dynamic diffusers combining ``mods`` (None: see :meth:`diffuser_part`), checked against the
        experts they were trained with, and their record."""
        part = self.diffuser_part(mods)
        if part not in self._diffuser_sets:
            self._diffuser_sets[part] = self._load_diffusers(part)
        return self._diffuser_sets[part]

    def _load_diffusers(self, part: str) -> tuple[DiffuserSet, dict]:
        self.require(part)
        diffusers, meta = store.load(self.root / part, "diffuser")
        for m in diffusers.modalities:
            sha = output_sha(self.root / m, "model.safetensors")
            if meta.get("experts", {}).get(m, sha) != sha:
                raise InputError(
                    f"the dynamic diffusers in {self.root / part} were trained with another {m} model; "
                    f"retrain them: {command_of(part, self.root)} --force"
                )
        return diffusers.to(self.device, self.dtype), meta

    def compile(self, mods: list[str], diffusers: bool) -> None:
        """``torch.compile`` the UNets of the experts of ``mods`` (and of the diffusers) in place, once:
        the same weights and results (to float rounding), compiled on their first call."""
        check_compiler(self.device)
        nets = [self.expert(m)[0].unet for m in mods]
        if diffusers:
            nets += [net.unet for net in self.diffusers(mods)[0].nets.values()]
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


__all__ = ["DEFAULT_SET", "Run", "command_of", "set_name", "set_part", "stage_of"]


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
