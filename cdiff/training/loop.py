"""The one training loop every training stage uses (built on accelerate).

A stage hands over a :class:`Task`: an ``nn.Module`` whose ``forward(batch, generator)``
returns ``(loss, logs)`` and which names its trainable submodules. The loop does the rest:
devices and processes (the same code on a CPU, one GPU, or under ``accelerate launch``),
mixed precision, gradient accumulation and clipping, optional EMA, an LR schedule, periodic
atomic checkpoints, ``resume`` that reaches the same weights as an uninterrupted run, step
and time budgets, a progress bar, ``metrics.jsonl`` and sample grids at intervals.

Determinism without saved RNG streams: the batch for step ``s`` is a function of
``(seed, s)`` (a fresh permutation of the data per epoch), and each step's randomness (noise,
timesteps) comes from a generator seeded with ``(seed, s, micro-step, rank)``. So resuming
from step ``s`` replays exactly what an uninterrupted run would have done.

Integrity: a checkpoint carries a sha256 of its own contents, checked on resume; a non-finite loss
or non-finite weights stop the run (one line, the last good checkpoint kept) instead of training
on, or exporting, NaNs; a torn last line of ``metrics.jsonl`` (a kill while logging) is dropped.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from cdiff.config import TrainConfig
from cdiff.errors import InputError
from cdiff.rundir import atomic_write_text
from cdiff.training import checkpoints

CKPT = "checkpoint.pt"
METRICS = "metrics.jsonl"


class Task(nn.Module):
    """What a training stage trains: ``forward(batch, generator) -> (loss, logs)``."""

    trainable: tuple[str, ...] = ()  # names of the submodules that are optimised and checkpointed
    current_step: int = 0  # set by the loop before each forward: the optimiser step being made

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.trainable}


@dataclass
class FitResult:
    step: int  # optimiser steps done in total
    finished: bool  # reached cfg.steps or the time budget
    wall_time_s: float  # this invocation
    samples_per_s: float


class StepBatches(Sampler[list[int]]):
    """Index lists for steps ``start..end``: step ``s``, micro ``m`` → a slice of epoch permutations."""

    def __init__(self, n: int, cfg: TrainConfig, start: int, end: int, rank: int = 0, world: int = 1):
        self.n, self.cfg, self.start, self.end, self.rank, self.world = n, cfg, start, end, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return self._perms[epoch]

    def indices(self, step: int, micro: int) -> list[int]:
        B = self.cfg.batch_size
        first = ((step * self.cfg.grad_accum + micro) * self.world + self.rank) * B  # global sample position
        out = []
        for p in range(first, first + B):
            out.append(int(self._perm(p // self.n)[p % self.n]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            for micro in range(self.cfg.grad_accum):
                yield self.indices(step, micro)

    def __len__(self) -> int:
        return (self.end - self.start) * self.cfg.grad_accum


def step_generator(seed: int, step: int, micro: int, rank: int, device: torch.device) -> torch.Generator:
    """The generator for one micro-step's randomness (noise, timesteps)."""
    g = torch.Generator(device=device)
    g.manual_seed(((seed * 1_000_003 + step) * 64 + micro) * 4096 + rank)
    return g


def fit(
    task: Task,
    dataset: Dataset,
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    on_sample: Callable[[int, Task], None] | None = None,
    collate: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
    show_progress: bool = True,
    cpu: bool = False,
) -> FitResult:
    """Train ``task`` on ``dataset`` until ``cfg.steps`` (or ``cfg.minutes``); checkpoints go in ``out``
    (``cpu``: on the CPU even where accelerate would pick a GPU)."""
    acc = _accelerator(cfg, cpu)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints.check_space(out, task)
    opt = _optimisation(task, cfg)
    start, elapsed_before = _starting_point(out, resume, task, opt)
    if acc.is_main_process:
        for tmp in out.glob(f".{CKPT}.*.tmp"):  # what a killed checkpoint write leaves
            tmp.unlink(missing_ok=True)
        _truncate_metrics(out / METRICS, start)  # lines after the starting point are made again
    acc.wait_for_everyone()
    # the scheduler steps once per optimiser step, by hand
    model, opt.optimizer = acc.prepare(task, opt.optimizer)
    if opt.ema is not None:
        opt.ema.to(acc.device)
    sampler = StepBatches(len(dataset), cfg, start, cfg.steps, acc.process_index, acc.num_processes)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
    loop = _Loop(acc, task, model, opt, cfg, out, start, elapsed_before, show_progress)
    for batch in loader:
        if loop.micro_step(batch) and loop.end_of_step(on_sample):
            break
    return loop.close()


def _accelerator(cfg: TrainConfig, cpu: bool = False):
    from accelerate import Accelerator

    no_accelerator = cpu or (not torch.cuda.is_available() and not torch.backends.mps.is_available())
    return Accelerator(  # cpu=True on CPU-only machines lets torchrun/accelerate launch run gloo data parallelism
        mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum, cpu=no_accelerator
    )


@dataclass
class _Optimisation:
    """What the optimiser steps: the trainable parameters, AdamW, its LR schedule and the optional EMA."""

    params: list[nn.Parameter]
    optimizer: Any
    scheduler: Any
    ema: Any


def _optimisation(task: Task, cfg: TrainConfig) -> _Optimisation:
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    params = [p for m in task.trainable_modules().values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    schedule = "cosine" if cfg.lr_schedule == "cosine" else "constant_with_warmup"
    scheduler = get_scheduler(
        schedule, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps
    )
    ema = EMAModel(params, decay=cfg.ema_decay) if cfg.ema_decay else None
    return _Optimisation(params, optimizer, scheduler, ema)


def _starting_point(out: Path, resume: bool, task: Task, opt: _Optimisation) -> tuple[int, float]:
    """``(step, elapsed seconds)`` to start from: a fresh run's, or with ``resume`` the checkpoint's."""
    ckpt_path = out / CKPT
    if not ckpt_path.is_file():
        return 0, 0.0
    if not resume:
        raise InputError(
            f"{out} holds an interrupted run; pass --resume to continue it or --force to start over"
        )
    return checkpoints.load(ckpt_path, task.trainable_modules(), opt.optimizer, opt.scheduler, opt.ema)


class _Loop:
    """One ``fit``'s state from micro-step to micro-step, and what it does after each optimiser step."""

    def __init__(self, acc, task, model, opt, cfg, out, start, elapsed_before, show_progress):
        """``model`` is ``task`` as ``acc.prepare`` wrapped it; ``start`` the first step to make."""
        self.acc, self.task, self.model, self.opt, self.cfg, self.out = acc, task, model, opt, cfg, out
        self.elapsed_before = elapsed_before
        self.t0 = time.perf_counter()
        self.step, self.micro, self.seen, self.logs = start, 0, 0, _Mean()
        self.bar = tqdm(
            total=cfg.steps,
            initial=start,
            disable=not (show_progress and acc.is_main_process),
            mininterval=0.1 if sys.stderr.isatty() else 10.0,  # quieter in log files
            unit="step",
            dynamic_ncols=True,
        )
        self.budget_s = cfg.minutes * 60 if cfg.minutes else math.inf
        self.stopped_by_time = False
        self.saved = start if (out / CKPT).is_file() else None  # the step of the last good checkpoint

    def micro_step(self, batch: Any) -> bool:
        """Forward and backward one micro-batch; True when that completed an optimiser step."""
        acc, cfg, opt = self.acc, self.cfg, self.opt
        batch = _to_device(batch, acc.device)
        gen = step_generator(cfg.seed, self.step, self.micro, acc.process_index, acc.device)
        self.task.current_step = self.step
        with acc.accumulate(self.model):
            with acc.autocast():
                loss, logs = self.model(batch, gen)
            acc.backward(loss)  # divided by grad_accum inside
            if acc.sync_gradients and cfg.grad_clip:
                acc.clip_grad_norm_(opt.params, cfg.grad_clip)
            opt.optimizer.step()  # a no-op until the last micro-step
            if acc.sync_gradients:
                opt.scheduler.step()
            opt.optimizer.zero_grad(set_to_none=True)
        self.logs.add({"loss": self._finite_loss(loss), **logs})
        self.seen += cfg.batch_size * acc.num_processes
        self.micro += 1
        if self.micro < cfg.grad_accum:
            return False
        self.micro, self.step = 0, self.step + 1
        return True

    def _finite_loss(self, loss: torch.Tensor) -> float:
        """``loss`` as a float, or stop (every process together) when it is not finite on any of them.

        Checked after the backward pass, where the loop reads the loss anyway: the weights it may
        have spoilt are never saved.
        """
        local = loss.detach().float()
        total = self.acc.reduce(local.clone(), reduction="sum") if self.acc.num_processes > 1 else local
        value = total.item()
        if not math.isfinite(value):
            self._stop(f"loss became {value} at step {self.step + 1}")
        return local.item() if self.acc.num_processes > 1 else value

    def _weights_finite(self) -> bool:
        """Whether every trainable weight is finite (every process holds the same weights)."""
        return all(bool(torch.isfinite(p).all()) for p in self.opt.params)

    def _stop(self, what: str) -> None:
        kept = (
            f"the last good checkpoint (step {self.saved}) is kept"
            if self.saved is not None
            else "no checkpoint was saved before it"
        )
        self.bar.close()
        raise InputError(
            f"{what}; {kept}: --resume retries from it with the same settings, or lower the learning rate "
            "(--set ...train.lr=...) and start over with --force"
        )

    def end_of_step(self, on_sample: Callable[[int, Task], None] | None) -> bool:
        """EMA, progress, metrics, checkpoint and samples after an optimiser step; True when done."""
        acc, cfg, opt, step = self.acc, self.cfg, self.opt, self.step
        if opt.ema is not None:
            opt.ema.step(opt.params)
        rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.logs.last('loss'):.4f}", samples_s=f"{rate:.1f}", refresh=False)
        elapsed = self.elapsed_before + time.perf_counter() - self.t0
        if step % cfg.log_every == 0 or step == cfg.steps:
            _log(
                acc,
                self.out,
                {
                    "step": step,
                    **self.logs.pop(),
                    "lr": opt.scheduler.get_last_lr()[0],
                    "samples_per_s": round(rate, 2),
                    "elapsed_s": round(elapsed, 1),
                },
            )
        self.stopped_by_time = elapsed >= self.budget_s
        done = step >= cfg.steps or self.stopped_by_time
        if step % cfg.checkpoint_every == 0 or done:
            if not self._weights_finite():  # so a checkpoint is always good
                self._stop(f"the weights became non-finite at step {step}")
            modules = self.task.trainable_modules()
            checkpoints.save(
                acc, self.out / CKPT, step, elapsed, modules, opt.optimizer, opt.scheduler, opt.ema
            )
            self.saved = step
        if on_sample is not None and acc.is_main_process and (step % cfg.sample_every == 0 or done):
            with _ema_weights(opt.ema, opt.params):
                on_sample(step, self.task)
        return done

    def close(self) -> FitResult:
        """Wait for every process, export the EMA weights, end the accelerator's run."""
        self.bar.close()
        self.acc.wait_for_everyone()
        if self.opt.ema is not None:
            self.opt.ema.copy_to(self.opt.params)  # export the EMA weights
        if not self._weights_finite():  # from a checkpoint saved before weights were checked
            raise InputError(
                f"the trained weights are not finite after step {self.step}, so nothing is exported: "
                "lower the learning rate, then start over with --force"
            )
        wall = time.perf_counter() - self.t0
        self.acc.end_training()
        finished = self.step >= self.cfg.steps or self.stopped_by_time
        return FitResult(self.step, finished, wall, self.seen / max(wall, 1e-9))


class _ema_weights:
    """Temporarily swap the EMA weights in (for sample grids)."""

    def __init__(self, ema, params):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


# ---- logging --------------------------------------------------------------------------------


class _Mean:
    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0
        self._last: dict[str, float] = {}

    def add(self, logs: dict[str, float]) -> None:
        self.n += 1
        for k, v in logs.items():
            v = float(v)
            self.sums[k] = self.sums.get(k, 0.0) + v
            self._last[k] = v

    def last(self, key: str) -> float:
        return self._last.get(key, float("nan"))

    def pop(self) -> dict[str, float]:
        out = {k: round(v / max(self.n, 1), 6) for k, v in self.sums.items()}
        self.sums, self.n = {}, 0
        return out


def _log(acc, out: Path, record: dict[str, Any]) -> None:
    if acc.is_main_process:
        with open(out / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (none when it is absent; see :func:`_metric_lines`)."""
    return [record for _, record in _metric_lines(path)]


def _metric_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(line, record)`` for each line of a ``metrics.jsonl``.

    A last line that is not a JSON object is what a kill while logging leaves: it is dropped. Any
    other line that is not one means the file is damaged (a one-line error).
    """
    if not path.is_file():
        return []
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    out = []
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            out.append((line, record))
        elif n < len(lines):
            raise InputError(f"{path} is damaged (line {n} is not JSON); start over with --force")
    return out


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the metric lines after ``step`` (the run starts there again) and a torn last line."""
    if path.is_file():
        keep = [line for line, record in _metric_lines(path) if record.get("step", 0) <= step]
        atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch
