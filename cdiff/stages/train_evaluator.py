"""Stage ``train-evaluator``: the face parser and attribute classifier that ``evaluate`` scores with.

1. Open the prepared dataset: images, label maps and the caption attributes as classes
   (``cdiff.data.attributes``: gender, beard and age degrees; unknown values are ignored).
2. Train both nets together with the shared loop (augmented: flips with left/right classes
   swapped, colour jitter, blur, noise; and a share of the images replaced by the run's VAE
   reconstruction of them, since every generated image is decoded by that VAE); at intervals,
   log validation accuracy and save a grid.
3. Validate on every validation image, and on their VAE reconstructions when the run has a VAE
   (the images a generator can make at best: the evaluator's numbers there bound the metrics).
4. Export ``evaluator/{parser,classifier}.safetensors`` + ``config.json`` and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cdiff.config import Config
from cdiff.data import attributes as attr_mod
from cdiff.data.datasets import to_tensor, to_uint8
from cdiff.data.masks import CLASS_ID, NUM_CLASSES, colorize
from cdiff.data.prepared import PreparedDataset
from cdiff.imageio import grid, save_png
from cdiff.metrics import mean_iou, nanmean
from cdiff.models import evaluator as ev
from cdiff.models import store
from cdiff.models.vae import reconstruct
from cdiff.stages import training_common as tc
from cdiff.training.loop import Task, fit

GRID_IMAGES = 8
MAX_VAL = 1000  # validation images scored at the end (all of them for the demo)
# a horizontal flip turns each left part into a right one
_SWAP = [(CLASS_ID[f"l_{p}"], CLASS_ID[f"r_{p}"]) for p in ("eye", "brow", "ear")]


class EvaluatorData(Dataset):
    """``{"image": (3, H, W) in [-1, 1], "label": (H, W) int64, "attrs": (A,) int64}``; small sets stay in memory."""

    def __init__(self, data: PreparedDataset, ids: list[str], names: list[str]):
        self.data, self.ids = data, ids
        source = data.manifest["config"]["data"]["source"]
        records = data.records()
        self.attrs = torch.tensor([[attr_mod.targets(records[i], source)[n] for n in names] for i in ids])
        self.cache: dict[int, dict] | None = {} if data.resolution <= 128 else None
        self.recon: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        item = {
            "image": to_tensor(self.data.image(self.ids[i])),
            "label": torch.from_numpy(self.data.label(self.ids[i]).astype(np.int64)),
            "attrs": self.attrs[i],
        }
        if self.recon is not None:
            item["recon"] = self.recon[i]
        if self.cache is not None:
            self.cache[i] = item
        return item

    @torch.no_grad()
    def precompute_reconstructions(self, vae, batch: int = 64) -> None:
        """Keep the VAE's reconstruction of every image beside it (for datasets small enough to cache)."""
        recon = []
        for i in range(0, len(self), batch):
            x = torch.stack([self[k]["image"] for k in range(i, min(i + batch, len(self)))])
            recon.append(reconstruct(vae, x.to(_device_of(vae))).cpu())
        self.cache = {}  # items are rebuilt with their reconstruction
        self.recon = torch.cat(recon)


def augment(x: torch.Tensor, label: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip (swapping left/right classes), brightness/contrast jitter, blur and noise, per image."""
    B, dev = x.shape[0], x.device
    u = torch.rand(B, 6, generator=g, device=dev)
    flip = u[:, 0] < 0.5
    x = torch.where(flip.view(B, 1, 1, 1), x.flip(-1), x)
    flipped = label.flip(-1)
    swapped = flipped.clone()
    for a, b in _SWAP:
        swapped[flipped == a], swapped[flipped == b] = b, a
    label = torch.where(flip.view(B, 1, 1), swapped, label)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (0.8 + 0.4 * u[:, 1]).view(B, 1, 1, 1) + mean + (u[:, 2] - 0.5).view(B, 1, 1, 1) * 0.2
    sigma = x.shape[-1] / 64  # about one pixel of the demo's 64 px images, the same share of larger ones
    kernel = 2 * int(2 * sigma) + 1
    from torchvision.transforms.functional import gaussian_blur

    blurred = gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    x = x + u[:, 3].view(B, 1, 1, 1) * (blurred - x)
    noise = torch.randn(x.shape, generator=g, device=dev)
    x = x + noise * (0.05 * u[:, 4]).view(B, 1, 1, 1)
    return x.clamp(-1, 1), label


class EvaluatorTask(Task):
    """Cross-entropy of the parser's pixels + the classifier's attributes (unknown targets ignored)."""

    trainable = ("parser", "classifier")

    def __init__(
        self,
        parser: ev.FaceParser,
        classifier: ev.AttributeClassifier,
        names: list[str],
        aug: bool,
        vae=None,
        reconstructed: float = 0.0,
    ):
        super().__init__()
        self.parser, self.classifier, self.names, self.aug = parser, classifier, names, aug
        self.vae, self.reconstructed = vae, reconstructed  # the VAE is frozen (not a trainable module)
        if vae is not None:
            vae.requires_grad_(False).eval()

    def forward(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        x, label = batch["image"], batch["label"]
        if self.reconstructed > 0 and ("recon" in batch or self.vae is not None):
            pick = torch.rand(x.shape[0], generator=generator, device=x.device) < self.reconstructed
            if "recon" in batch:  # precomputed (small datasets)
                x = torch.where(pick.view(-1, 1, 1, 1), batch["recon"], x)
            elif pick.any():
                with torch.no_grad():
                    x = x.clone()
                    x[pick] = reconstruct(self.vae, x[pick])
        if self.aug:
            x, label = augment(x, label, generator)
        seg = F.cross_entropy(self.parser(x), label)
        logits = self.classifier(x)
        loss, logs = seg, {"parser": seg.item()}
        for k, name in enumerate(self.names):
            target = batch["attrs"][:, k]
            if (target >= 0).any():
                ce = F.cross_entropy(logits[name], target, ignore_index=-1)
                logs[name] = ce.item()
            else:  # keep the head in the graph (DDP needs every parameter used)
                ce = 0.0 * logits[name].sum()
            loss = loss + ce
        return loss, logs


def score(
    parser: ev.FaceParser,
    classifier: ev.AttributeClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    attrs: torch.Tensor,
    names: list[str],
) -> dict[str, float]:
    """Parser pixel accuracy (full size and the 32x32 protocol), mean IoU and per-attribute accuracy."""
    s = ev.judge(parser, classifier, images, labels, attrs)
    out = {
        "parser_accuracy": nanmean(s["mask_accuracy"]),
        "parser_accuracy_32": nanmean(s["mask_accuracy_32"]),
        "parser_miou": mean_iou(s["parsed"].long(), labels.long(), NUM_CLASSES),
    }
    return out | {f"{n}_accuracy": nanmean(s[f"{n}_hit"]) for n in names}


@dataclass
class EvaluatorReport:
    out: Path
    steps: int
    wall_time_s: float
    samples_per_s: float
    parameters: dict[str, int]
    val: dict[str, float]
    val_reconstructed: dict[str, float] | None


def spec_of(cfg: Config, data: PreparedDataset) -> ev.EvaluatorSpec:
    source = data.manifest["config"]["data"]["source"]
    e = cfg.evaluator
    return ev.EvaluatorSpec(
        source=source,
        resolution=data.resolution,
        parser_channels=tuple(e.parser_channels),
        parser_size=min(e.parser_size, data.resolution),
        classifier_channels=tuple(e.classifier_channels),
        classifier_size=min(e.classifier_size, data.resolution),
        attributes=attr_mod.classes(source),
    )


def parameter_counts(cfg: Config, source: str = "synthetic", resolution: int = 64) -> dict[str, int]:
    e = cfg.evaluator
    spec = ev.EvaluatorSpec(
        source, resolution, tuple(e.parser_channels), e.parser_size, tuple(e.classifier_channels),
        e.classifier_size, attr_mod.classes(source),
    )  # fmt: skip
    return _counts(*ev.build(spec))


def run(
    cfg: Config,
    run_dir: Path,
    data_dir: Path,
    out: Path,
    *,
    force: bool = False,
    resume: bool = False,
    log=print,
    device: torch.device | str = "cpu",
) -> EvaluatorReport:
    stage = tc.TrainingOutput(out, force, resume)  # before any set-up: finished work is refused at once
    # 1. data and models
    data = PreparedDataset.open(data_dir)
    spec = spec_of(cfg, data)
    names = list(spec.attributes)
    train = EvaluatorData(data, data.split("train"), names)
    val_ids = data.split("val")[:MAX_VAL] or data.split("train")[:GRID_IMAGES]
    val = EvaluatorData(data, val_ids, names)
    known = _known_labels(train, names, log)
    vae = _training_vae(run_dir, cfg, train, log, torch.device(device))
    torch.manual_seed(cfg.evaluator.train.seed)  # the initial weights are part of a reproducible run
    parser, classifier = ev.build(spec)
    task = EvaluatorTask(parser, classifier, names, cfg.evaluator.augment, vae, cfg.evaluator.reconstructed)
    partial = stage.begin(cfg)
    val_items = [val[i] for i in range(len(val))]
    val_x = torch.stack([v["image"] for v in val_items])
    val_y = torch.stack([v["label"] for v in val_items])

    # 2. train, logging validation accuracy on a subset
    on_sample = _on_sample(stage, val, val_x, val_y, names)
    on_cpu = torch.device(device).type == "cpu"
    result = fit(task, train, cfg.evaluator.train, partial, resume=resume, on_sample=on_sample, cpu=on_cpu)

    # 3. validation: real images, then VAE reconstructions
    scores, rec_scores = _validate(parser, classifier, vae, val_x, val_y, val.attrs, names)

    # 4. export
    counts = _counts(parser, classifier)
    metrics = {"val": scores, "val_reconstructed": rec_scores, "val_images": len(val)}
    store.save(
        partial,
        "evaluator",
        ev.Evaluator(spec, (parser, classifier)),
        ev.evaluator_record(spec, {"metrics": metrics}),
    )
    save_parse_grid(partial / "parser.png", parser, val_x[:GRID_IMAGES], val_y[:GRID_IMAGES])
    stage.finish(
        "train-evaluator",
        cfg,
        tc.inputs(data_dir, data),
        tc.hashed(partial, ev.PARSER, ev.CLASSIFIER),
        metrics={"steps": result.step, "samples_per_s": result.samples_per_s, **metrics},
        parameters=counts,
        known_training_labels=known,
    )
    return EvaluatorReport(
        out, result.step, stage.elapsed(), result.samples_per_s, counts, scores, rec_scores
    )


def _on_sample(stage: tc.TrainingOutput, val: EvaluatorData, val_x, val_y, names: list[str]):
    """What training does every ``sample_every`` steps: validation accuracy on a subset, a parse grid."""

    def on_sample(step: int, t: Task) -> None:
        t.eval()
        n = min(len(val), 128)
        rec = score(t.parser, t.classifier, val_x[:n], val_y[:n], val.attrs[:n], names)
        t.train()
        stage.log_metrics({"step": step, **{f"val_{k}": round(v, 4) for k, v in rec.items()}})
        save_parse_grid(stage.sample_path(step), t.parser, val_x[:GRID_IMAGES], val_y[:GRID_IMAGES])
        t.train()

    return on_sample


def _known_labels(train: EvaluatorData, names: list[str], log) -> dict[str, int]:
    """How many training images have a known value of each attribute (a note for those with none)."""
    known = {n: int((train.attrs[:, k] >= 0).sum()) for k, n in enumerate(names)}
    for n, count in known.items():
        if count == 0:
            log(
                f"note: no training image has a known {n}: its accuracy will be nan (the data has no labels for it)"
            )
    return known


def _training_vae(run_dir: Path, cfg: Config, train: EvaluatorData, log, device: torch.device):
    """The run's VAE (on ``device``) when it has one (None otherwise), its reconstructions kept beside
    small training sets."""
    has_vae = (run_dir / "vae" / "manifest.json").is_file()
    vae = store.load(run_dir / "vae", "vae", device)[0] if has_vae else None
    if vae is None and cfg.evaluator.reconstructed > 0:
        log("note: the run has no VAE yet: the evaluator trains on real images only")
    if vae is not None and cfg.evaluator.reconstructed > 0 and train.cache is not None:
        log(f"reconstructing the {len(train)} training images with the run's VAE")
        train.precompute_reconstructions(vae)
    return vae


def _validate(parser, classifier, vae, val_x, val_y, attrs, names) -> tuple[dict, dict | None]:
    """Scores on the validation images, and on their VAE reconstructions when there is a VAE."""
    parser.eval(), classifier.eval()
    scores = score(parser, classifier, val_x, val_y, attrs, names)
    rec_scores = None
    if vae is not None:
        dev = _device_of(vae)
        rec_x = torch.cat(
            [reconstruct(vae, val_x[i : i + 64].to(dev)).cpu() for i in range(0, len(val_x), 64)]
        )
        rec_scores = score(parser, classifier, rec_x, val_y, attrs, names)
    return scores, rec_scores


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _counts(parser: ev.FaceParser, classifier: ev.AttributeClassifier) -> dict[str, int]:
    return {
        "face parser": sum(p.numel() for p in parser.parameters()),
        "attribute classifier": sum(p.numel() for p in classifier.parameters()),
    }


@torch.no_grad()
def save_parse_grid(path: Path, parser: ev.FaceParser, x: torch.Tensor, y: torch.Tensor) -> None:
    """Rows of (image, true mask, parsed mask)."""
    was_training = parser.training
    parser.eval()
    pred = parser(x).argmax(1)
    parser.train(was_training)
    tiles = []
    for im, t, p in zip(x, y, pred, strict=True):
        tiles += [
            to_uint8(im),
            colorize(t.numpy().astype(np.uint8)),
            colorize(p.numpy().astype(np.uint8)),
        ]
    save_png(path, grid(tiles, ncol=6), {"layout": "triples: image, true mask, parsed mask"})


__all__ = ["EvaluatorTask", "parameter_counts", "run", "score"]
