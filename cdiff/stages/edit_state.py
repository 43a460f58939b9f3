"""An edit's saved state: what makes it re-renderable without optimising again (``edit --from``).

The fine-tuned UNet of each target modality (``finetuned_<m>.safetensors``), the target and
optimised embeddings (``embeddings.safetensors``), the start noise and the input photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cdiff.errors import InputError
from cdiff.imageio import save_png
from cdiff.stages.imagic import EditState
from cdiff.stages.run import Run

EMBEDDINGS, NOISE, INPUT = "embeddings.safetensors", "start_noise.safetensors", "input.png"


def save_state(state: EditState, folder: Path, photo_source: str) -> None:
    """What makes an edit reusable: the fine-tuned UNets, the embeddings, the start noise, the input."""
    for m in state.targets:
        unet = {k: v.detach().cpu().contiguous() for k, v in state.experts[m].unet.state_dict().items()}
        save_file(unet, str(folder / f"finetuned_{m}.safetensors"))
    save_png(folder / INPUT, state.image, {"source": photo_source})
    tensors = {}
    for m in state.targets:
        for k, v in state.targets[m].items():
            tensors[f"{m}.target.{k}"] = v.cpu().contiguous()
            tensors[f"{m}.optimised.{k}"] = state.optimised[m][k].cpu().contiguous()
    save_file(tensors, str(folder / EMBEDDINGS))
    save_file({"x_T": state.noise.contiguous()}, str(folder / NOISE))


def state_bytes(state: EditState) -> int:
    """About what :func:`save_state` writes: the fine-tuned UNets (float32), the embeddings, the noise."""
    unets = sum(p.numel() * 4 for m in state.targets for p in state.experts[m].unet.parameters())
    embeddings = sum(2 * v.numel() * v.element_size() for t in state.targets.values() for v in t.values())
    return unets + embeddings + state.noise.numel() * state.noise.element_size() + state.image.nbytes


def load_state(src: Path, run: Run, settings: dict, diffusers: bool = True) -> EditState:
    """An earlier edit's state from its folder: the fine-tuned UNets, embeddings, start noise, input, targets
    (``diffusers``: and the diffuser set of its targets, when several)."""
    mods = settings["modalities"]
    for name in [EMBEDDINGS, NOISE] + [f"finetuned_{m}.safetensors" for m in mods]:
        if not (src / name).is_file():
            raise InputError(f"{src} lacks {name}; the edit cannot be re-rendered (run the edit again)")
    experts = {m: run.fresh_expert(m) for m in mods}
    for m in mods:
        experts[m].unet.load_state_dict(load_file(str(src / f"finetuned_{m}.safetensors")))
        experts[m].to(run.device).eval().requires_grad_(False)
    tensors = load_file(str(src / EMBEDDINGS))

    def part(m: str, kind: str) -> dict[str, torch.Tensor]:
        return {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"{m}.{kind}.")}

    targets = {m: part(m, "target") for m in mods}
    optimised = {m: {**targets[m], **part(m, "optimised")} for m in mods}  # integer tensors: targets only
    noise = load_file(str(src / NOISE))["x_T"]
    vae, vae_meta = run.vae()
    with Image.open(src / INPUT) as im:
        image = np.asarray(im.convert("RGB"))
    notes: list[str] = []
    raw = {
        m: run.read(m, [str(src / f"target_{m}.png")], notes)
        for m in mods
        if (src / f"target_{m}.png").is_file()
    }
    sets = run.diffusers(mods)[0] if diffusers and len(mods) > 1 else None
    return EditState(
        run.root, experts, targets, optimised, noise, vae, vae_meta, settings, sets, raw, {}, image
    )


__all__ = ["EMBEDDINGS", "INPUT", "NOISE", "load_state", "save_state", "state_bytes"]
