"""The Python API: ``Pipeline`` loads a run's models once and generates or edits in memory.

    from cdiff import Pipeline
    pipe = Pipeline.from_run()                      # the shipped demo models
    res = pipe.generate(mask=mask, text="He is in his thirties.", seed=7, num=1)
    res.images[0]                                   # a PIL.Image
    res.save("out/")                                # the files `cdiff generate` writes

Nothing is written unless asked. The sampling settings are the ``sample.*`` config keys
(``steps``, ``eta``, ``guidance``, ``solver``, ``batch_size``, ``weights``, ``reweight``,
``influence_every``), given per call or to :meth:`Pipeline.from_run`; the same seed and settings
give the same pixels as the command line.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cdiff import config as cfg_mod
from cdiff.config import Config, SampleConfig
from cdiff.devices import resolve_device, resolve_dtype
from cdiff.diffusion.sampling import StepInfo
from cdiff.errors import InputError
from cdiff.stages import edit as edit_stage
from cdiff.stages import generate as gen
from cdiff.stages import imagic
from cdiff.stages.run import Run

SAMPLE_KEYS = tuple(f.name for f in dataclasses.fields(SampleConfig))


def _progress_bar(enabled: bool | None | Callable[[str], Any]) -> Callable[[str], Any]:
    """``bar(label)`` → a context manager yielding ``update(done, total)``; quiet unless a terminal.

    ``enabled`` may also be such a ``bar`` factory itself (the command line passes its rich bars).
    """
    from tqdm.auto import tqdm

    if callable(enabled):
        return enabled
    on = sys.stderr.isatty() if enabled is None else enabled

    class Bar:
        def __init__(self, label: str):
            self.bar = tqdm(desc=label, unit="step", disable=not on, leave=False)

        def __enter__(self):
            def update(done: int, total: int) -> None:
                self.bar.total = total
                self.bar.n = done
                self.bar.refresh()

            return update

        def __exit__(self, *exc: object) -> None:
            self.bar.close()

    return Bar


def _pil(images: list[np.ndarray]) -> list[Image.Image]:
    return [Image.fromarray(im) for im in images]


@dataclasses.dataclass
class GenerationResult:
    """Images in memory: ``images`` (PIL), ``arrays`` (uint8 HxWx3), ``seeds``, ``notes``, and
    ``influence`` (per image, the weights applied at each step, ``(steps, M, h, w)``) when sampled with
    ``intermediates=True``."""

    generation: Any  # the stage's Generation (or, for method "all", a dict of them)

    @property
    def arrays(self) -> list[np.ndarray]:
        return self._first().images

    @property
    def images(self) -> list[Image.Image]:
        return _pil(self.arrays)

    @property
    def seeds(self) -> list[int]:
        return self._first().seeds

    @property
    def notes(self) -> list[str]:
        return self._first().notes

    @property
    def influence(self) -> list[torch.Tensor] | None:
        g = self._first()
        if g.steps is None or len(g.modalities) < 2:
            return None
        out = []
        for _, infos in sorted(g.steps.items()):
            for b in range(infos[0].x_t.shape[0]):
                out.append(torch.stack([i.extras["weights"][:, b, 0] for i in infos]))
        return out

    def _first(self):
        g = self.generation
        return g if not isinstance(g, dict) else next(iter(g.values()))

    def save(self, out: str | Path, force: bool = False) -> Path:
        """Write the files ``cdiff generate`` writes (PNGs with metadata, grid, manifest) into ``out``."""
        out = Path(out)
        gen.check_out(out, force)
        if isinstance(self.generation, dict):
            from cdiff.stages import compare

            return compare.write_all(self.generation, out).out
        return gen.write(self.generation, out).out


@dataclasses.dataclass
class EditSession:
    """An Imagic edit in memory: ``images`` of the ``alphas`` sweep, ``metrics``; :meth:`render`
    draws more alphas from the optimised state without optimising again."""

    pipeline: Pipeline
    cfg: Config
    state: Any
    alphas: list[float]
    arrays: list[np.ndarray]
    metrics: dict[str, float]
    notes: list[str]
    request: Any

    @property
    def images(self) -> list[Image.Image]:
        return _pil(self.arrays)

    def render(self, alphas: list[float], progress: bool | None = None) -> list[Image.Image]:
        with _progress_bar(progress)("rendering") as update:
            return _pil(imagic.render(self.cfg, self.state, list(alphas), progress=update))

    def save(self, out: str | Path, force: bool = False) -> Path:
        """Write the files ``cdiff edit`` writes (the reusable state, a PNG per alpha, grid, manifest)."""
        import time

        out = Path(out)
        if out.exists() and (out.is_file() or any(out.iterdir())) and not force:  # an empty one is fine
            raise InputError(f"{out} already exists; choose another folder or pass force=True")
        photo = self.request.photo
        record = {
            "inputs": {"run": str(self.state.run_dir.resolve())},
            "metrics": self.metrics,
            "notes": self.notes,
            "t0": time.perf_counter(),
            "photo": str(Path(photo).resolve()) if isinstance(photo, str | Path) else "<image>",
        }
        edit_stage.write(self.cfg, self.state, self.alphas, self.request, out, record)
        return out


class Pipeline:
    """A run's models, loaded once, with the configuration (a preset plus overrides) they sample with."""

    def __init__(self, run: Run, config: Config):
        self.run, self.config = run, config

    @classmethod
    def from_run(
        cls,
        run: str | Path | None = None,
        *,
        config: str = "demo",
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float32",
        overrides: dict[str, Any] | list[str] | None = None,
        **sample: Any,
    ) -> Pipeline:
        """The models of ``run`` (default: the demo models shipped in the package) on ``device``.

        ``config``: a preset or YAML file (as ``--config``); ``overrides``: ``{"a.b": v}`` (as
        ``--set``); ``sample``: sampling defaults for every call (``steps=20``, ``solver="dpm"``, ...).
        """
        if run is None:
            from cdiff.stages.demo_weights import shipped_run

            run = shipped_run()
        if not Path(run).is_dir():
            raise InputError(f"run directory not found: {run}")
        dev = resolve_device(device)
        cfg = cfg_mod.load_config(config, overrides)
        pipe = cls(Run(run, dev, resolve_dtype(dtype, dev)), cfg)
        pipe.config = pipe._with(sample)
        return pipe

    def _with(self, sample: dict[str, Any]) -> Config:
        unknown = [k for k in sample if k not in SAMPLE_KEYS]
        if unknown:
            raise InputError(f"unknown sampling option '{unknown[0]}'; known: {', '.join(SAMPLE_KEYS)}")
        raw = cfg_mod.to_dict(self.config)
        raw["sample"].update({k: list(v) if isinstance(v, tuple) else v for k, v in sample.items()})
        cfg = cfg_mod.build(Config, raw)
        cfg_mod.check_sample(cfg.sample, cfg.diffusion.timesteps)
        return cfg

    def examples(self) -> list[dict[str, str]]:
        """The run's example condition sets (shipped demo runs: the mask of one face, the caption of another)."""
        path = self.run.root / "examples" / "pairs.jsonl"
        return gen.read_pairs_file(path) if path.is_file() else []

    def generate(
        self,
        mask: Any = None,
        text: str | list[str] | None = None,
        *,
        method: str = "collaborative",
        seed: int = 0,
        num: int = 1,
        conditions: dict[str, Any] | None = None,
        pairs: list[dict[str, Any]] | None = None,
        modalities: list[str] | None = None,
        intermediates: bool = False,
        progress: bool | None = None,
        on_step: Callable[[StepInfo], None] | None = None,
        **sample: Any,
    ) -> GenerationResult:
        """Images for the conditions (``mask``: a path, PIL image or HxW int array; ``text``: a caption;
        several of either as lists; other modalities in ``conditions``), seeds ``seed … seed+num-1``.

        ``method``: collaborative, composable, a modality name (that model alone), ``collaborative-<set>``
        (another diffuser set of the run, e.g. ``collaborative-mask-sketch``) or ``all``. ``modalities``:
        which models a multi-modal method combines (its diffuser set); default: those of the conditions
        given when two or more, else the run's ``diffuser`` set.
        ``on_step(info)``: called at every sampler step with a :class:`~cdiff.diffusion.sampling.StepInfo`
        (``x_t``, the predicted clean latent ``pred_x0``, the applied ``extras["weights"]``) of the
        batch being sampled, e.g. to show a live preview; it does not change the images. With ``all``,
        generate once per method instead (``cdiff.stages.generate.methods()``).
        """
        given = dict(conditions or {})
        for name, value in (("mask", mask), ("text", text)):
            if value is not None:
                given[name] = value
        given = {m: v if isinstance(v, list) else [v] for m, v in given.items()}
        req = gen.GenerateRequest(
            method, given, list(pairs or []), num, seed, intermediates, modalities=modalities
        )
        cfg = self._with(sample)
        if method == gen.ALL and on_step is not None:
            raise InputError("on_step follows one method: with method 'all', call generate once per method")
        with _progress_bar(progress)(f"generating ({method})") as update:
            if method == gen.ALL:
                from cdiff.stages import compare

                return GenerationResult(compare.sample_all(cfg, req, self.run, update))
            return GenerationResult(gen.sample(cfg, req, self.run, update, on_step))

    def edit(
        self,
        photo: Any,
        *,
        target_text: str | None = None,
        target_mask: Any = None,
        targets: dict[str, Any] | None = None,
        alphas: list[float] | None = None,
        seed: int = 0,
        embed_steps: int | None = None,
        embed_lr: float | None = None,
        finetune_steps: int | None = None,
        finetune_lr: float | None = None,
        intermediates: bool = False,
        progress: bool | None = None,
        **sample: Any,
    ) -> EditSession:
        """Imagic: optimise toward the targets, fine-tune, and render the ``alphas`` sweep (in memory)."""
        given = {"mask": target_mask, "text": target_text, **(targets or {})}
        req = edit_stage.EditRequest(
            photo=photo,
            targets={m: v for m, v in given.items() if v is not None},
            alphas=alphas,
            seed=seed,
            embed_steps=embed_steps,
            embed_lr=embed_lr,
            finetune_steps=finetune_steps,
            finetune_lr=finetune_lr,
            save_intermediates=intermediates,
        )
        cfg = self._with(sample)
        bar = _progress_bar(progress)
        state, metrics, notes = edit_stage.optimise(cfg, req, self.run, bar)
        sweep = list(alphas or (cfg.edit.alphas if len(state.targets) == 1 else cfg.edit.collab_alphas))
        with bar("rendering") as update:
            images = imagic.render(cfg, state, sweep, progress=update)
        return EditSession(self, cfg, state, sweep, images, metrics, notes, req)


__all__ = ["EditSession", "GenerationResult", "Pipeline"]
