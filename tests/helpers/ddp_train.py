"""Run by tests/test_distributed.py under torchrun: a few steps of the shared loop on 2 CPU processes.

Each rank writes its final weights to OUT/rank<k>.pt so the test can compare them.
"""

import os
import sys
from pathlib import Path

import torch
from torch import nn

from cdiff.config import TrainConfig
from cdiff.training.loop import Task, fit


class Regression(Task):
    trainable = ("net",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, batch, generator):
        x, y = batch
        noise = torch.randn(x.shape, generator=generator) * 0.1  # differs per rank
        return ((self.net(x + noise) - y) ** 2).mean(), {}


class Points(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self):
        return 64

    def __getitem__(self, i):
        return self.x[i], self.y[i]


if __name__ == "__main__":
    out = Path(sys.argv[1])
    task = Regression()
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-2, checkpoint_every=3, log_every=3, ema_decay=0.9)
    fit(task, Points(), cfg, out / "train", show_progress=False)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))  # set by torchrun
    from accelerate import PartialState

    state = PartialState()  # what the loop's Accelerator saw
    torch.save(
        {
            "world": world,
            "processes": state.num_processes,
            "index": state.process_index,
            "backend": str(state.backend),
            "state": task.net.state_dict(),
        },
        out / f"rank{rank}.pt",
    )
