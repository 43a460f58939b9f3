"""The VAE's loss pieces (seed eq. 1): VGG16 perceptual term and the optional PatchGAN critic."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cdiff.errors import InputError

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's IMAGENET1K_V1 weights file name
_LAYERS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in vgg16().features
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def find_vgg16(path: str | None) -> Path:
    """The VGG16 weights: ``path`` if given, else torchvision's file in the torch hub cache."""
    if path:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        raise InputError(
            f"VGG16 weights not found at {p}; give torchvision's {VGG16_FILE} via --set vae.vgg_weights=FILE"
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    if cached.is_file():
        return cached
    raise InputError(
        f"the perceptual loss needs VGG16 weights, which are not available offline: pass --set vae.vgg_weights=FILE "
        f"(torchvision's {VGG16_FILE}) or place that file in {cached.parent} (TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}); "
        "or turn the term off with --set vae.perceptual_weight=0"
    )


class VGGPerceptual(nn.Module):
    """Perceptual distance on VGG16 features (Johnson et al.): per layer, channel-normalised
    features, squared difference averaged over positions, summed over five layers. Frozen."""

    def __init__(self, weights: Path):
        super().__init__()
        from torchvision.models import vgg16

        net = vgg16()
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as exc:
            raise InputError(
                f"cannot load VGG16 weights from {weights} ({type(exc).__name__}); is it {VGG16_FILE}?"
            ) from None
        self.features = net.features[: _LAYERS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptual:
        return super().train(False)  # always in eval mode

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x, y`` in [-1, 1], ``(B, 3, H, W)`` → ``(B,)`` distances."""
        h = torch.cat([x, y]).add(1).div(2).sub(self.mean).div(self.std)
        total = torch.zeros(x.shape[0], device=x.device)
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _LAYERS:
                a, b = F.normalize(h, dim=1).chunk(2)
                total = total + (a - b).pow(2).sum(1).mean((1, 2))
        return total


class PatchGAN(nn.Module):
    """PatchGAN critic (pix2pix): 3 strided convolutions, then a 1-channel patch map."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = channels
        for i in range(1, layers + 1):
            c_next = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [
                nn.Conv2d(c, c_next, 4, stride, 1, bias=False),
                nn.GroupNorm(1, c_next),
                nn.LeakyReLU(0.2, True),
            ]
            c = c_next
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
