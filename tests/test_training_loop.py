"""The shared training loop: learning, resume equivalence, checkpoints, budgets, metrics."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cdiff.config import TrainConfig
from cdiff.errors import InputError
from cdiff.training.loop import CKPT, METRICS, StepBatches, Task, fit


class Regression(Task):
    trainable = ("net",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, batch, generator):
        x, y = batch
        noise = torch.randn(x.shape, generator=generator, device=x.device) * 0.01  # per-step randomness
        return ((self.net(x + noise) - y) ** 2).mean(), {"steps_seen": float(self.current_step)}


class Points(torch.utils.data.Dataset):
    def __init__(self, n=60):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def cfg(**kw):
    base = dict(steps=40, batch_size=8, lr=1e-2, checkpoint_every=10, log_every=10, grad_clip=1.0)
    return TrainConfig(**{**base, **kw})


def weights(task):
    return torch.cat([p.detach().flatten() for p in task.parameters()])


def test_overfits_fixed_batch(tmp_path):
    task = Regression()
    x, y = Points(8).x, Points(8).y
    before = ((task.net(x) - y) ** 2).mean().item()
    fit(task, Points(8), cfg(steps=150, batch_size=8, lr=3e-2), tmp_path, show_progress=False)
    after = ((task.net(x) - y) ** 2).mean().item()
    assert after < before / 20, (before, after)


@pytest.mark.parametrize(
    "extra", [{}, {"ema_decay": 0.9, "grad_accum": 2, "lr_schedule": "cosine", "warmup_steps": 5}]
)
def test_resume_reaches_same_weights(tmp_path, extra):
    full = Regression()
    fit(full, Points(), cfg(**extra), tmp_path / "full", show_progress=False)
    half = Regression()
    interrupted = cfg(**extra)

    def stop_at_20(step, task):
        if step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            half,
            Points(),
            cfg(**{**extra, "sample_every": 20}),
            tmp_path / "half",
            on_sample=stop_at_20,
            show_progress=False,
        )
    resumed = Regression()  # a fresh process: nothing but the checkpoint carries over
    fit(resumed, Points(), interrupted, tmp_path / "half", resume=True, show_progress=False)
    assert torch.allclose(weights(full), weights(resumed), atol=1e-6)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "half" / METRICS).read_text().splitlines()]
    assert steps == [10, 20, 30, 40]  # no duplicated lines after the resume


def test_existing_checkpoint_needs_resume(tmp_path):
    fit(Regression(), Points(), cfg(steps=10), tmp_path, show_progress=False)
    assert (tmp_path / CKPT).is_file()
    with pytest.raises(InputError, match="--resume"):
        fit(Regression(), Points(), cfg(steps=20), tmp_path, show_progress=False)


def test_checkpoint_is_weights_only(tmp_path):
    fit(Regression(), Points(), cfg(steps=10, ema_decay=0.99), tmp_path, show_progress=False)
    state = torch.load(tmp_path / CKPT, weights_only=True)
    assert state["step"] == 10 and set(state["modules"]) == {"net"} and state["ema"] is not None


def test_time_budget_stops_early(tmp_path):
    result = fit(Regression(), Points(), cfg(steps=10**6, minutes=0.02), tmp_path, show_progress=False)
    assert result.finished and 0 < result.step < 10**6
    assert torch.load(tmp_path / CKPT, weights_only=True)["step"] == result.step


def test_metrics_and_current_step(tmp_path):
    fit(Regression(), Points(), cfg(steps=20, log_every=10), tmp_path, show_progress=False)
    lines = [json.loads(ln) for ln in (tmp_path / METRICS).read_text().splitlines()]
    assert [r["step"] for r in lines] == [10, 20]
    assert lines[0]["steps_seen"] == pytest.approx(4.5)  # mean of current_step over steps 0..9
    assert {"loss", "lr", "samples_per_s", "elapsed_s"} <= set(lines[0])


def test_batches_depend_on_step_only():
    c = cfg(batch_size=4, grad_accum=2)
    a = StepBatches(10, c, 0, 6)
    b = StepBatches(10, c, 3, 6)
    assert list(a)[6:] == list(b)
    seen = [i for batch in list(a)[:5] for i in batch][:10]
    assert sorted(seen) == list(range(10))  # one epoch is a permutation
    two = [StepBatches(10, c, 0, 2, rank=r, world=2) for r in (0, 1)]
    r0, r1 = list(two[0]), list(two[1])
    assert r0[0] != r1[0] and not set(r0[0]) & set(r1[0])  # ranks see different samples
