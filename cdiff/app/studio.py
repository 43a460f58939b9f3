"""What the app does, without the page: one :class:`~cdiff.api.Pipeline`, one job at a time, files per visitor.

:class:`Studio` holds the models (loaded once) and the folder visitors' files go to. Every model call
runs on one long-lived thread (:meth:`Studio.call`): jobs queue there one after the other, whatever
the page's queue does (a job whose visitor left is stopped at its next step), and the CPU's thread
team stays warm. :meth:`Studio.generate` yields a :class:`Preview` (the predicted x_0, decoded by the
VAE) while it samples, then the :class:`Result` in memory, then again once saved. No Gradio here.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

import cdiff
from cdiff.api import GenerationResult, Pipeline
from cdiff.data.datasets import to_uint8
from cdiff.data.masks import read_mask
from cdiff.diffusion.sampling import StepInfo
from cdiff.errors import InputError
from cdiff.stages import compare
from cdiff.stages import generate as gen
from cdiff.stages.run import DEFAULT_SET

SKETCH = "sketch"  # the sketch modality: its own canvas when the run has its model

ALL = gen.ALL
PREVIEW_EVERY_S = 0.5  # at most 2 decoded previews a second: a decode costs 30-60 ms of sampling on 2 cores
SEED_RANGE = 2**31  # "random" draws from 0 … 2^31 - 1: short enough to type again
T = TypeVar("T")
Hook = Callable[[str], Callable[[StepInfo], None] | None]  # method → its on_step


@dataclasses.dataclass
class Settings:
    """One generation as the page asks for it."""

    text: str
    method: str = "collaborative"
    solver: str = "dpm"
    steps: int = 20
    seed: int = 0
    guidance: float = 3.0
    sketch: Any = None  # a PIL drawing (dark lines on light), or None: no sketch condition


@dataclasses.dataclass
class Preview:
    """The predicted clean image at one sampler step."""

    method: str
    step: int  # 1 … steps
    steps: int
    t: int
    image: np.ndarray  # (H, W, 3) uint8


@dataclasses.dataclass
class Result:
    """A finished generation: the in-memory result, its folder (None until saved), the label map it was given."""

    result: GenerationResult
    generations: dict[str, gen.Generation]
    folder: Path | None
    label: np.ndarray
    settings: Settings
    wall_s: float


class Cancelled(Exception):
    """The visitor left: stop sampling."""


def sanitise_session(session: str | None) -> str:
    """A folder name from a page session id (it comes from the browser: never trust it as a path)."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "", session or "")[:64]
    return clean or "local"


def output_root(run_root: Path, shipped: bool) -> tuple[Path, bool]:
    """Where visitors' folders go: ``RUN/app`` when the run is writable and not the package's own
    weights, else a new temporary folder; and whether it is temporary."""
    package = Path(cdiff.__file__).resolve().parent
    inside_package = package == run_root.resolve() or package in run_root.resolve().parents
    if not shipped and not inside_package and os.access(run_root, os.W_OK):
        return run_root / "app", False
    return Path(tempfile.mkdtemp(prefix="cdiff-app-")), True


class Studio:
    """The models of one run, loaded once, and the visitors' folders."""

    def __init__(self, pipe: Pipeline, out_root: Path, temporary: bool = False):
        self.pipe, self.out_root, self.temporary = pipe, Path(out_root), temporary
        self.models = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdiff-models")
        self._tokenizer: Any = None

    @classmethod
    def from_run(cls, run: str | Path | None = None, device: str = "auto") -> Studio:
        """The models of ``run`` (default: the demo models shipped in the package)."""
        return cls.from_pipeline(Pipeline.from_run(run, device=device), shipped=run is None)

    @classmethod
    def from_pipeline(cls, pipe: Pipeline, shipped: bool = False) -> Studio:
        """Over a loaded pipeline; ``shipped``: its run is the package's own (visitors' files go elsewhere)."""
        root, temporary = output_root(pipe.run.root, shipped=shipped)
        if temporary:  # visitors' files live as long as the server
            atexit.register(shutil.rmtree, root, ignore_errors=True)
        return cls(pipe, root, temporary)

    # ---- what the page offers -------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        return int(self.pipe.run.vae()[1]["resolution"])

    @property
    def sketches(self) -> bool:
        """True when the run has a sketch model and diffusers that combine it with the page's pair: the
        page offers a sketch canvas."""
        run = self.pipe.run
        pair = run.diffuser_modalities(DEFAULT_SET)
        return run.has(SKETCH) and (SKETCH in pair or run.has_set([*pair, SKETCH]))

    def modalities(self, sketch: bool | None = None) -> list[str]:
        """What the page's conditions combine: the mask and the caption (the run's ``diffuser`` set), and
        the sketch when one is drawn (``sketch``; None: whenever the run has a sketch model)."""
        run = self.pipe.run
        pair = run.diffuser_modalities(DEFAULT_SET)
        with_sketch = self.sketches if sketch is None else sketch and self.sketches
        return [*pair, SKETCH] if with_sketch and SKETCH not in pair else pair

    def methods(self, sketch: bool | None = None) -> list[str]:
        """The methods this run has models for (over :meth:`modalities`; None: with or without a sketch),
        then ``all``."""
        if sketch is None:
            return list(dict.fromkeys([*self.methods(False)[:-1], *self.methods(True)]))
        return [*compare.methods_for(self.pipe.run, self.modalities(sketch), strict=False), ALL]

    def examples(self) -> list[dict[str, Any]]:
        """The run's example pairs with their masks read: ``{"mask": path, "text", "label"}``."""
        return [{**ex, "label": read_mask(ex["mask"])} for ex in self.pipe.examples() if "mask" in ex]

    def caption_notes(self, text: str) -> list[str]:
        """Words of ``text`` the text model does not know, and over-long captions (its own tokenizer copy)."""
        from cdiff.data.tokenizer import caption_notes, load_tokenizer

        if not text.strip() or "text" not in self.pipe.run.diffuser_modalities(["text"]):
            return []
        meta = self.pipe.run.expert("text")[1]
        if self._tokenizer is None:  # its own: the sampler's copy may be busy in another thread
            self._tokenizer = load_tokenizer(self.pipe.run.path("text") / "tokenizer")
        return caption_notes(self._tokenizer, [text], meta["unimodal"]["text_encoder"]["max_length"])

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the models' thread, after the jobs before it; its result."""
        return self.models.submit(fn, *args, **kwargs).result()

    def visitor_dir(self, session: str | None) -> Path:
        """``OUT_ROOT/<session>/``: everything this visitor's jobs write."""
        folder = self.out_root / sanitise_session(session)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def warm_up(self) -> None:
        """Load every model and run each method once for one step (the first call pays for the set-up)."""
        ex = self.examples()
        label = ex[0]["label"] if ex else np.zeros((self.resolution,) * 2, np.uint8)
        drawing = (ex[0].get(SKETCH) if ex else None) or _a_drawing(self.resolution)
        for sketch in [None, drawing] if self.sketches else [None]:  # each method without and with a sketch
            for method in self.methods(sketch is not None)[:-1]:
                settings = Settings("a", method, steps=1, sketch=sketch)
                self.call(self._sample, label, settings, lambda m: None)

    # ---- generating -----------------------------------------------------------------------------

    def generate(self, label: np.ndarray, s: Settings, folder: Path) -> Iterator[Preview | Result]:
        """Previews while sampling, then the :class:`Result` in memory, then again once saved into a new
        numbered ``folder/NNN`` (``Result.folder`` set).

        Runs on the models' thread; closing the iterator (the visitor left) stops the sampling.
        """
        _check(s)
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        self.models.submit(self._work, label, s, folder, events, stop)
        try:
            while True:
                kind, value = events.get()
                if kind == "error":
                    raise value
                yield value
                if kind == "done":
                    return
        finally:
            stop.set()

    def _work(self, label, s: Settings, folder: Path, events: queue.Queue, stop: threading.Event) -> None:
        t0 = time.perf_counter()
        try:
            gens = self._sample(label, s, lambda m: _Previewer(self.pipe, m, s.steps, events, stop))
            result = GenerationResult(gens if s.method == ALL else gens[s.method])
            events.put(("sampled", Result(result, gens, None, label, s, time.perf_counter() - t0)))
            out = result.save(gen.next_output_dir(folder))
            events.put(("done", Result(result, gens, out, label, s, time.perf_counter() - t0)))
        except Cancelled:
            pass
        except Exception as exc:  # reaches the page as a message (InputError) or an internal error
            events.put(("error", exc))

    def _sample(self, label: np.ndarray, s: Settings, hook: Hook) -> dict[str, gen.Generation]:
        """One generation per method (``all``: each method in turn, the same condition set and seed);
        ``hook(method)`` gives that method's ``on_step``."""
        drawn = s.sketch is not None
        methods = self.methods(drawn)[:-1] if s.method == ALL else [s.method]
        pairs = [{"mask": label, "text": s.text, **({SKETCH: s.sketch} if drawn else {})}]
        gens = {}
        for method in methods:
            res = self.pipe.generate(
                pairs=pairs,
                method=method,
                seed=s.seed,
                num=1,
                intermediates=method == "collaborative",
                on_step=hook(method),
                solver=s.solver,
                steps=s.steps,
                guidance=s.guidance,
                progress=False,
            )
            gens[method] = res.generation
        return gens


class _Previewer:
    """The ``on_step`` hook of one method: decodes the predicted x_0 of image 0 now and then, queues it."""

    def __init__(self, pipe: Pipeline, method: str, steps: int, events: queue.Queue, stop: threading.Event):
        self.vae, meta = pipe.run.vae()
        self.scale = meta["scale_factor"]
        self.method, self.steps, self.events, self.stop = method, steps, events, stop
        self.last = 0.0

    def __call__(self, info: StepInfo) -> None:
        if self.stop.is_set():
            raise Cancelled
        last_step = info.index + 1 == self.steps  # the image itself follows at once
        too_soon = info.index > 0 and time.perf_counter() - self.last < PREVIEW_EVERY_S
        if last_step or too_soon:
            return
        with torch.no_grad():
            x = self.vae.decode(info.pred_x0[:1].float() / self.scale).sample
        image = to_uint8(x[0].cpu())
        self.events.put(("preview", Preview(self.method, info.index + 1, self.steps, info.t, image)))
        self.last = time.perf_counter()


def _a_drawing(size: int) -> Image.Image:
    """A face's outline, for warming up the sketch model."""
    from PIL import ImageDraw

    page = Image.new("L", (size, size), 255)
    ImageDraw.Draw(page).ellipse((size // 5, size // 8, size - size // 5, size - size // 8), outline=0)
    return page


def _check(s: Settings) -> None:
    if not isinstance(s.text, str):
        raise InputError(f"the caption must be text, got {type(s.text).__name__}")
    named = s.method.removeprefix(gen.SET_METHOD).split("-") if s.method.startswith(gen.SET_METHOD) else []
    if (s.method in ("collaborative", "composable", "text", ALL) or "text" in named) and not s.text.strip():
        raise InputError(f"type a caption: the {s.method} method conditions on one")
    needs = (
        s.method.removeprefix(gen.SET_METHOD).split("-")
        if s.method.startswith(gen.SET_METHOD)
        else [s.method]
    )
    if SKETCH in needs and s.sketch is None:
        raise InputError(f"draw a sketch (or upload one): the {s.method} method conditions on one")
    for name in ("steps", "seed"):
        value = getattr(s, name)
        if isinstance(value, float) and value.is_integer():
            setattr(s, name, int(value))
        if not isinstance(getattr(s, name), int) or isinstance(getattr(s, name), bool):
            raise InputError(f"{name} must be a whole number, got {value!r:.40}")


def random_seed() -> int:
    return secrets.randbelow(SEED_RANGE)
