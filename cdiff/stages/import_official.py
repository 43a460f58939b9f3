"""Stage ``import-official``: the authors' released checkpoints → a cdiff run (REFERENCE.md §5).

1. Resolve the config: the ``celeba256`` / ``celeba512`` preset for ``resolution``, with the released
   diffusers' additive time injection, then ``--set`` overrides.
2. Find the files (``{res}_{vae,text,mask,codiff_mask_text}.ckpt`` in a folder, or the files given),
   open each safely and memory-mapped, tell its kind from its keys and check its resolution.
3. Plan: map every key (:mod:`cdiff.models.official`), check every shape against cdiff's models
   built on the meta device, the schedule buffers against cdiff's, and a part found in several
   files (every uni-modal file also holds the VAE) for equality.
4. The text model needs bert-base-uncased's tokenizer: from ``tokenizer`` or the HF cache, offline.
5. Write each part into ``<part>.partial/`` exactly as its training stage exports it (the weights are
   assigned to meta-built models, so nothing is copied before safetensors writes them), then move
   them all into place. A run imported this way is used by generate, edit and visualize like a
   trained one.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from cdiff import config as cfg_mod
from cdiff import modalities
from cdiff.config import Config
from cdiff.data.tokenizer import BERT, load_bert
from cdiff.errors import InputError
from cdiff.models import official, store
from cdiff.models.build import build_vae, vae_downsample
from cdiff.models.collab import DiffuserSet, diffuser_record
from cdiff.models.official import KINDS, FilePlan
from cdiff.models.unimodal import TOKENIZER, UnimodalModel, unimodal_record
from cdiff.models.vae import vae_record
from cdiff.rundir import begin_stage, check_output, finish_stage, make_manifest, sha256_file

RESOLUTIONS = (256, 512)
SCALE_FACTOR = {256: 0.058, 512: 0.141}  # the release's latent scale factors (REFERENCE.md §1)
EXPERTS = ("mask", "text")  # the release's uni-modal models, one file each ({res}_{modality}.ckpt)
STAGES = {"vae": "train-vae", **{m: f"train-unimodal-{m}" for m in EXPERTS}, "diffuser": "train-diffuser"}
SOURCES = {  # part → the files that hold it, the first found is used, the others must be equal
    "vae": ("vae", "codiff_mask_text", "text", "mask"),
    "mask": ("codiff_mask_text", "mask"),
    "text": ("codiff_mask_text", "text"),
    "diffuser": ("codiff_mask_text",),
}
ORIGIN = "the authors' release, github.com/ziqihuangg/Collaborative-Diffusion (REFERENCE.md §5)"


@dataclass
class Source:
    path: Path
    kind: str
    sd: dict[str, torch.Tensor]
    info: dict
    plan: FilePlan | None = None


@dataclass
class ImportReport:
    run_dir: Path
    parts: dict[str, str]  # part → the file kind it came from
    files: dict[str, Path]  # kind → file
    checked_equal: dict[str, list[str]]  # part → the other files holding the same weights
    mapped: int  # keys written
    dropped: dict[str, int]  # reason → keys
    parameters: dict[str, int]
    wall_time_s: float


def resolve_config(
    resolution: int, sets: list[str] | None = None, tokenizer: str | None = None, preset: str | None = None
) -> Config:
    """``preset`` (default ``celeba<resolution>``), the release's diffuser time injection, then ``sets``."""
    if resolution not in RESOLUTIONS:
        raise InputError(f"--resolution must be 256 or 512 (the released models' sizes), got {resolution}")
    _, raw = cfg_mod.read_preset(preset or f"celeba{resolution}")
    fixed = {
        "diffuser.unet.time_injection": "additive",
        "data.tokenizer": BERT,
        "data.tokenizer_path": tokenizer,
    }
    raw = cfg_mod.apply_overrides(raw, {k: v for k, v in fixed.items() if v is not None})
    cfg = cfg_mod.build(Config, cfg_mod.apply_overrides(raw, list(sets or [])))
    if cfg.data.resolution != resolution:
        raise InputError(f"--set data.resolution={cfg.data.resolution} contradicts --resolution {resolution}")
    return cfg


def find_files(inputs: list[Path], resolution: int) -> list[Path]:
    """The checkpoint files: those given, and ``{res}_<kind>.ckpt`` in each folder given."""
    if not inputs:
        raise InputError("give the folder with the released .ckpt files, or the files themselves")
    files = []
    for p in inputs:
        if not p.is_dir():
            files.append(p)
            continue
        found = [p / f"{resolution}_{k}.ckpt" for k in KINDS if (p / f"{resolution}_{k}.ckpt").is_file()]
        if not found:
            other = sorted(q.name for q in p.glob("*.ckpt"))
            hint = f" (it has {', '.join(other[:4])}: another --resolution?)" if other else ""
            raise InputError(
                f"no {resolution}_{{vae,text,mask,codiff_mask_text}}.ckpt in {p}{hint}; "
                "download the released checkpoints (docs/pretrained.md)"
            )
        files += found
    return files


def named_parts(files: list[Path], resolution: int) -> list[str]:
    """The parts ``files`` will write, as far as their names tell (checked before they are opened).

    Every released file holds the VAE; the other parts are known from ``{res}_<kind>.ckpt`` names
    (a file named otherwise is told by its keys once opened, and ``begin_stage`` checks its parts).
    """
    if not files:
        return []
    kinds = {f.name.removeprefix(f"{resolution}_").removesuffix(".ckpt") for f in files}
    return [p for p in STAGES if p == "vae" or any(k in kinds for k in SOURCES[p])]


def open_sources(files: list[Path], cfg: Config, trust_pickle: bool) -> dict[str, Source]:
    """Load each file (memory-mapped), tell its kind, check its resolution and plan its keys."""
    levels = len(cfg.vae.block_out_channels)
    sources: dict[str, Source] = {}
    for path in files:
        sd, info = official.load_checkpoint(path, trust_pickle)
        shapes = {k: tuple(v.shape) for k, v in sd.items()}
        kind = official.file_kind(path, set(shapes))
        if kind in sources:
            raise InputError(f"two {kind} checkpoints given ({sources[kind].path} and {path}); give one")
        prefix = "" if kind == "vae" else official.VAE_PREFIX
        found = official.vae_levels(shapes, prefix)
        if found != levels:
            res = {3: 256, 4: 512}.get(found)
            fix = f"pass --resolution {res}" if res else "is it a released checkpoint?"
            raise InputError(
                f"{path} has a VAE with {found} levels, not the {levels} of --resolution "
                f"{cfg.data.resolution}; {fix}"
            )
        plan = official.plan_file(
            path,
            kind,
            shapes,
            levels,
            cfg.unimodal.unet.layers_per_block,
            cfg.diffuser.unet.layers_per_block,
            keep_logits=cfg.unimodal.text_encoder.output_layer,
        )
        official.check_schedule(path, sd, cfg.diffusion)
        sources[kind] = Source(path, kind, sd, info, plan)
    return sources


def target_models(cfg: Config, parts: list[str]) -> dict[str, torch.nn.Module]:
    """cdiff's models for ``parts``, on the meta device (no memory until weights are assigned)."""
    latent = cfg.data.resolution // vae_downsample(cfg.vae)
    lc, vocab = cfg.vae.latent_channels, cfg.unimodal.text_encoder.vocab_size

    def make(part: str) -> torch.nn.Module:
        if part == "vae":
            return build_vae(cfg.vae)
        if part == "diffuser":
            return DiffuserSet(cfg.diffuser, lc, latent)
        return UnimodalModel(cfg.unimodal, part, lc, latent, vocab if _has_vocabulary(part) else None)

    with torch.device("meta"):
        return {p: make(p) for p in parts}


def _has_vocabulary(part: str) -> bool:
    return part in modalities.names() and modalities.get(part).has_vocabulary


def _weights(model: torch.nn.Module) -> torch.nn.Module:
    return model.nets if isinstance(model, DiffuserSet) else model


def plan_parts(sources: dict[str, Source], models: dict[str, torch.nn.Module]) -> tuple[dict, dict]:
    """``(part → primary source, part → other sources checked equal)``; every shape checked."""
    primary, equal = {}, {}
    for part, model in models.items():
        holders = [sources[k] for k in SOURCES[part] if k in sources]
        target = {k: v.shape for k, v in _weights(model).state_dict().items()}
        fix = "is it a released checkpoint of this --resolution?"
        for s in holders:
            official.check_shapes(s.path, part, s.plan.parts[part], target, fix)
        first = holders[0]
        for other in holders[1:]:
            if not official.same_weights(first.sd, first.plan.parts[part], other.sd, other.plan.parts[part]):
                raise InputError(
                    f"{first.path} and {other.path} hold different {part} weights; import them separately"
                )
        primary[part], equal[part] = first, [s.kind for s in holders[1:]]
    return primary, equal


def load_tokenizer_offline(path: str | None, vocab: int, max_length: int):
    """bert-base-uncased's tokenizer from ``path`` or the Hugging Face cache; never the network."""
    options = (
        "pass --tokenizer DIR (a bert-base-uncased folder with its vocab.txt), or fill the Hugging Face "
        f"cache on a machine with internet (`hf download {BERT}`)"
    )
    folder = Path(path).expanduser() if path else None
    if folder is not None and not ((folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()):
        raise InputError(f"the text model needs the {BERT} tokenizer; {folder} has no vocab.txt: {options}")
    try:
        tok = load_bert(str(folder) if folder else None, max_length)
    except InputError:
        raise InputError(
            f"the text model needs the {BERT} tokenizer, which is not in the Hugging Face cache: {options}"
        ) from None
    if len(tok) != vocab:
        raise InputError(
            f"the tokenizer in {folder or 'the cache'} has {len(tok)} tokens, the text model {vocab}: {options}"
        )
    return tok


def run(
    inputs: list[Path],
    resolution: int,
    run_dir: Path,
    *,
    tokenizer: str | None = None,
    sets: list[str] | None = None,
    preset: str | None = None,
    trust_pickle: bool = False,
    force: bool = False,
    log=print,
) -> ImportReport:
    t0 = time.perf_counter()
    # 1-2. config and files; finished parts are refused before any file is opened
    cfg = resolve_config(resolution, sets, tokenizer, preset)
    files = find_files(inputs, resolution)
    for part in named_parts(files, resolution):
        check_output(run_dir / part, force)
    sources = open_sources(files, cfg, trust_pickle)
    # 3. plan every part and check every shape
    parts = [p for p in STAGES if any(k in sources for k in SOURCES[p])]
    models = target_models(cfg, parts)
    primary, equal = plan_parts(sources, models)
    # 4. tokenizer
    tok = None
    if any(_has_vocabulary(p) for p in parts):
        te = cfg.unimodal.text_encoder
        tok = load_tokenizer_offline(cfg.data.tokenizer_path, te.vocab_size, te.max_length)
    # 5. write every part into its .partial folder, then move them all into place
    records = _file_records(sources)
    manifests = _write_parts(parts, primary, equal, models, records, cfg, tok, run_dir, force, t0, log)
    dropped = Counter(r for s in sources.values() for r in s.plan.dropped.values())
    return ImportReport(
        run_dir,
        {p: primary[p].kind for p in parts},
        {k: s.path for k, s in sources.items()},
        {p: equal[p] for p in parts},
        sum(len(primary[p].plan.parts[p]) for p in parts),
        dict(dropped),
        {p: manifests[p]["parameters"][p] for p in parts},
        time.perf_counter() - t0,
    )


def _file_records(sources: dict[str, Source]) -> dict[str, dict]:
    """What the manifests say of each file read: kind → path, size, hash, training step, keys."""
    return {
        s.kind: {
            "path": str(s.path.resolve()),
            "bytes": s.path.stat().st_size,
            "sha256": sha256_file(s.path),
            "global_step": s.info["global_step"],
            "keys": len(s.sd),
            "dropped": dict(Counter(s.plan.dropped.values())),
        }
        for s in sources.values()
    }


def _write_parts(parts, primary, equal, models, files, cfg, tok, run_dir, force, t0, log) -> dict[str, dict]:
    """Write each part into its ``.partial`` folder (all of them removed if one fails), then move them
    all into place; returns the parts' manifests. ``models[part]`` is dropped once written."""
    partials: dict[str, Path] = {}
    shas: dict[str, str] = {}
    manifests = {}
    try:
        for part in parts:
            partials[part], _ = begin_stage(run_dir / part, cfg_mod.to_yaml(cfg), force)
        for part in parts:
            log(f"writing {part} from {primary[part].path.name}")
            src, model = primary[part], models[part]
            _weights(model).load_state_dict(official.convert(src.sd, src.plan.parts[part]), assign=True)
            _export(part, model, partials[part], cfg, tok, shas)
            shas[part] = sha256_file(partials[part] / "model.safetensors")
            models[part] = None  # free the (memory-mapped) weights as we go
            manifests[part] = _manifest(part, cfg, src, equal[part], files, shas, run_dir, t0)
    except BaseException:
        for p in partials.values():
            shutil.rmtree(p, ignore_errors=True)
        raise
    for part in parts:
        finish_stage(partials[part], run_dir / part, manifests[part])
    return manifests


def _export(part: str, model, folder: Path, cfg: Config, tok, shas: dict[str, str]) -> None:
    """The files a training stage exports for ``part``."""
    latent = cfg.data.resolution // vae_downsample(cfg.vae)
    common = {"latent_channels": cfg.vae.latent_channels, "latent_size": latent}
    if part == "vae":
        store.save(
            folder,
            "vae",
            model,
            vae_record(model, cfg.vae, SCALE_FACTOR[cfg.data.resolution], cfg.data.resolution),
        )
    elif part == "diffuser":
        record = {**common, "extra_in": {}, "experts": {m: shas[m] for m in model.modalities}}
        store.save(folder, "diffuser", model, diffuser_record(model, record))
    else:
        meta = {
            **common,
            "scale_factor": SCALE_FACTOR[cfg.data.resolution],
            "vocab_size": len(tok) if _has_vocabulary(part) else None,
            "diffusion": cfg_mod.to_dict(cfg.diffusion),
            "resolution": cfg.data.resolution,
        }
        store.save(folder, "unimodal", model, unimodal_record(model, meta))
        if _has_vocabulary(part):
            tok.save_pretrained(str(folder / TOKENIZER))


def _manifest(
    part: str, cfg: Config, src: Source, equal: list[str], files: dict, shas: dict, run_dir: Path, t0: float
) -> dict:
    n = sum(math.prod(r.shape) for r in src.plan.parts[part].values())
    inputs = {"official": {k: files[k] for k in [src.kind, *equal]}}
    if part != "vae":
        inputs["vae"] = {"path": str(run_dir / "vae"), "sha256": shas["vae"]}
    if part == "diffuser":
        inputs |= {m: {"path": str(run_dir / m), "sha256": shas[m]} for m in EXPERTS}
    return make_manifest(
        STAGES[part],
        cfg_mod.to_dict(cfg),
        inputs,
        {"model.safetensors": {"sha256": shas[part]}},
        time.perf_counter() - t0,
        metrics={"global_step": src.info["global_step"]},
        parameters={part: n},
        imported={
            "from": ORIGIN,
            "file": src.kind,
            "checked_equal_in": equal,
            "keys_mapped": len(src.plan.parts[part]),
            "scale_factor": SCALE_FACTOR[cfg.data.resolution] if part in ("vae", *EXPERTS) else None,
        },
    )


__all__ = ["ImportReport", "resolve_config", "run"]
