"""The demo weights that ship inside the package: a complete, read-only run directory.

``cdiff/weights/demo/`` holds the VAE, the text model (with its tokenizer), the mask model, the
dynamic diffusers and the evaluator models of ``cdiff evaluate`` (face parser, attribute
classifier) as fp16 safetensors (the models load them into fp32), each with the manifest of the
training stage that made it, plus:

- ``examples/``: validation (mask, caption) pairs that take the mask of one validation face and
  the caption of another (rare combinations included) and a few validation photos for ``edit``;
- ``reference/``: images generated from the exported weights at export time, with their
  settings, so a test can check that the shipped weights still produce them;
- ``manifest.json``: the config, seeds and per-stage metrics;
- ``timings.json``: the commit that trained them, when they were exported, from which run, and each
  stage's wall time and speed: the one file a rerun of ``make demo-train`` does not write byte for
  byte (at a later commit with the same training code, every other file comes out the same).

``generate`` and ``edit`` use this folder when no ``--run`` is given with the demo preset;
``cdiff import-demo --run RUN`` copies it into a run directory. It is never hand-made:
``make demo-train`` trains the models from scratch with the committed code and then runs
``python -m cdiff.stages.demo_weights export RUN``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import load_file, save_file

from cdiff.data.masks import CLASS_NAMES, write_mask
from cdiff.data.prepared import PreparedDataset
from cdiff.data.sketches import encode_sketch
from cdiff.errors import InputError
from cdiff.imageio import save_png
from cdiff.rundir import atomic_write_json, read_manifest, require_stage, sha256_file

PARTS = {  # folder → the stage that trains it
    "vae": "train-vae",
    "text": "train-unimodal-text",
    "mask": "train-unimodal-mask",
    "diffuser": "train-diffuser",
}
EVALUATOR = "evaluator"  # the evaluate stage's parser and classifier (shipped too, optional in a run)
DIFFUSER_SETS = "diffuser-"  # every other diffuser set (diffuser-mask-sketch-text, ...): shipped when trained
EVALUATOR_FILES = ("parser.safetensors", "classifier.safetensors")
WEIGHTS, CONFIG, EXAMPLES, REFERENCE = "model.safetensors", "config.json", "examples", "reference"
TIMINGS = "timings.json"  # which commit, when and how fast: the one shipped file a rerun does not repeat
VOLATILE = ("created", "wall_time_s", "samples_per_s")  # moved from the stages' manifests into TIMINGS
SKETCH = "sketch"  # the sketch model's folder: with it, the example pairs get a third face's sketch
PAIRS = "pairs.jsonl"
HAT = CLASS_NAMES.index("hat")
REFERENCE_SETTINGS = {"method": "collaborative", "num": 1, "seed": 0, "steps": 10, "eta": 0.0, "pairs": 4}


def shipped_dir() -> Path:
    return Path(str(resources.files("cdiff") / "weights" / "demo"))


def shipped_run() -> Path:
    """The shipped demo run, or a clear error when this installation has none."""
    folder = shipped_dir()
    missing = [p for p in PARTS if not (folder / p / WEIGHTS).is_file()]
    if missing:
        raise InputError(
            f"this installation has no shipped demo weights ({folder} lacks {', '.join(missing)}); "
            "train them with `make demo-train`, or pass --run RUN"
        )
    return folder


def optional_parts(run_dir: Path) -> dict[str, str]:
    """The run's other finished models, shipped when it has them: ``{folder: stage}`` for each further
    expert (the sketch model) and each further diffuser set (``diffuser-mask-sketch-text``, ...)."""
    from cdiff import modalities

    found = {m: f"train-unimodal-{m}" for m in modalities.names() if m not in PARTS}
    found |= {p.name: "train-diffuser" for p in sorted(run_dir.glob(DIFFUSER_SETS + "*"))}
    return {p: stage for p, stage in found.items() if (run_dir / p / "manifest.json").is_file()}


def _fp16_copy(src: Path, dst: Path) -> None:
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()
    }
    tmp = dst.with_name(f".{dst.name}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})  # one key: safetensors orders several at random
    tmp.replace(dst)


def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(  # tracked code only: the weights being exported are not code
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "cdiff", ":!cdiff/weights"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        return {"commit": head.stdout.strip(), "code_changed_since_commit": bool(dirty.stdout.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "code_changed_since_commit": None}


def example_pairs(data: PreparedDataset, n: int = 8) -> list[dict[str, str]]:
    """Validation pairs: the mask of one face, the caption of another; the rare combinations first.

    Rare: a face whose own caption says "She" (long hair, no beard) with a bearded man's caption,
    and a young face's mask with an elderly caption. Then mask i with caption i + 1.
    """
    ids = data.split("val")
    records = data.records()
    cap = {i: records[i]["caption"] for i in ids}
    women = [i for i in ids if cap[i].startswith("She")]
    beards = [
        i
        for i in ids
        if "beard" in cap[i].lower() and "no beard" not in cap[i].lower() and cap[i].startswith("He")
    ]
    old = [
        i
        for i in ids
        if any(w in cap[i].lower() for w in ("sixties", "seventies", "eighties", "elderly", "very old"))
    ]
    young = [i for i in ids if any(w in cap[i].lower() for w in ("teen", "twenties"))]
    pairs = []
    if women and beards:
        pairs.append((women[0], beards[0]))
    if young and old:
        pairs.append((young[0], old[0]))
    k = 0
    while len(pairs) < n and k < len(ids):
        pairs.append((ids[k], ids[(k + 1) % len(ids)]))
        k += 1
    return [{"mask_of": a, "caption_of": b, "text": cap[b]} for a, b in pairs[:n]]


EDIT_TEXT = "This man has a full beard. He is in his seventies."


def _edit_example(data: PreparedDataset) -> tuple[str, str]:
    """(photo id, target-mask id) for the demo's edits: a young beardless man, and a face with a hat."""
    ids = data.split("val")
    cap = {i: data.records()[i]["caption"] for i in ids}
    man = ("He ", "This man", "The man", "This guy", "The gentleman")
    young = [
        i
        for i in ids
        if cap[i].startswith(man)
        and ("any beard" in cap[i] or "no beard" in cap[i])
        and any(w in cap[i] for w in ("twenties", "thirties", "young"))
    ]
    photo = young[0] if young else ids[0]
    hats = [i for i in ids if i != photo and (data.label(i) == HAT).sum() > 0]
    return photo, hats[0] if hats else ids[1]


def _write_examples(run_dir: Path, dest: Path, photos: int = 3) -> None:
    """Example pairs (with the sketch of a third face when the run has a sketch model), photos, the edit's."""
    data = PreparedDataset.open(run_dir / "data")
    (dest / "masks").mkdir(parents=True)
    (dest / "photos").mkdir()
    sketches = (run_dir / SKETCH / "manifest.json").is_file()
    val, lines = data.split("val"), []
    for k, p in enumerate(example_pairs(data)):
        write_mask(dest / "masks" / f"{p['mask_of']}.png", data.label(p["mask_of"]))
        record = {"mask": f"masks/{p['mask_of']}.png", "text": p["text"]}
        record |= {"mask_of": p["mask_of"], "caption_of": p["caption_of"]}
        if sketches:  # a face neither the mask nor the caption came from
            third = next(i for i in val[k + 2 :] + val if i not in (p["mask_of"], p["caption_of"]))
            (dest / "sketches").mkdir(exist_ok=True)
            (dest / "sketches" / f"{third}.png").write_bytes(encode_sketch(data.sketch(third)))
            record |= {"sketch": f"sketches/{third}.png", "sketch_of": third}
        lines.append(json.dumps(record))
    (dest / PAIRS).write_text("\n".join(lines) + "\n")
    for i in data.split("val")[:photos]:
        save_png(dest / "photos" / f"{i}.png", data.image(i), {"caption": data.records()[i]["caption"]})
    photo, mask = _edit_example(data)
    save_png(
        dest / "edit_photo.png", data.image(photo), {"id": photo, "caption": data.records()[photo]["caption"]}
    )
    write_mask(dest / "edit_target_mask.png", data.label(mask))
    atomic_write_json(dest / "edit.json", {"photo": photo, "target_mask_of": mask, "target_text": EDIT_TEXT})


def reference_pairs(folder: Path) -> list[dict[str, str]]:
    """The conditions of the reference images: the first example pairs' masks and captions (the
    two-way diffusers draw them; the pairs' sketches are for the three-way ones)."""
    from cdiff.stages import generate as gen

    pairs = gen.read_pairs_file(folder / EXAMPLES / PAIRS)[: REFERENCE_SETTINGS["pairs"]]
    return [{"mask": p["mask"], "text": p["text"]} for p in pairs]


def _write_reference(folder: Path) -> dict:
    """Generate the reference images from the exported weights (so a test can regenerate them)."""
    from cdiff import config as cfg_mod
    from cdiff.stages import generate as gen

    s = REFERENCE_SETTINGS
    pairs = reference_pairs(folder)
    req = gen.GenerateRequest(method=s["method"], pairs=pairs, num=s["num"], seed=s["seed"])
    out = folder / REFERENCE
    cfg = cfg_mod.load_config("demo", {"sample.steps": s["steps"], "sample.eta": s["eta"]})
    res = gen.run(cfg, req, folder, out)
    for name in sorted(p.name for p in out.glob("*.png")):  # condition paths as in the shipped folder
        with Image.open(out / name) as im:
            info, image = dict(im.info), np.asarray(im.convert("RGB"))
        info = {k: v.replace(str(folder.resolve()) + "/", "") for k, v in info.items() if isinstance(v, str)}
        save_png(out / name, image, info)
    (
        out / "manifest.json"
    ).unlink()  # the generation manifest names temporary paths; reference.json says it all
    record = {
        "settings": s,
        "images": [f"{k:03d}-{s['seed']:06d}.png" for k in range(len(pairs))],
        "mean_pixel": [float(np.mean(im)) for im in res.images],
    }
    atomic_write_json(out / "reference.json", record)
    return record


def export(run_dir: Path, dest: Path | None = None) -> dict[str, int]:
    """Write the run's trained models (fp16), examples and reference images to ``dest``."""
    dest = dest or shipped_dir()
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # 1. the models, each with its training stage's manifest (what varies run to run: timings.json)
    sizes, sha, stages = {}, {}, {}
    origin = {"dtype": "float16"}
    timings: dict = {
        **_git_commit(),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "from_run": str(run_dir),
        "stages": {},
    }
    extra = optional_parts(run_dir)
    shipped = {part: (stage, (WEIGHTS,)) for part, stage in {**PARTS, **extra}.items()}
    shipped[EVALUATOR] = ("train-evaluator", EVALUATOR_FILES)
    for part, (stage, files) in shipped.items():
        stages[part] = _ship_part(run_dir, staging, part, stage, files, origin, sizes, sha)
        timings["stages"][part] = _volatile(staging / part / "manifest.json")
    # the diffusers name the experts they were trained with: now the shipped (fp16) files
    for part in ["diffuser", *(p for p in extra if p.startswith(DIFFUSER_SETS))]:
        record = json.loads((staging / part / CONFIG).read_text())
        record["experts"] = {m: sha[m] for m in record["experts"]}
        (staging / part / CONFIG).write_text(json.dumps(record, indent=2) + "\n")
    # 2. examples (the run gets the same: make demo reads them) and reference images
    _write_examples(run_dir, staging / EXAMPLES)
    shutil.rmtree(run_dir / EXAMPLES, ignore_errors=True)
    shutil.copytree(staging / EXAMPLES, run_dir / EXAMPLES)
    reference = _write_reference(staging)
    # 3. the manifest, then move into place
    atomic_write_json(
        staging / "manifest.json",
        {
            "what": "cdiff demo weights (fp16), trained from scratch by make demo-train",
            **origin,
            "config": read_manifest(run_dir / "diffuser")["config"],
            "data": read_manifest(run_dir / "data").get("outputs", {}),
            "stages": stages,
            "sizes_bytes": sizes,
            "total_mib": round(sum(sizes.values()) / 2**20, 2),
            "reference": reference,
        },
    )
    atomic_write_json(staging / TIMINGS, timings)
    if dest.exists():
        shutil.rmtree(dest)
    staging.replace(dest)
    return sizes


def _ship_part(run_dir, staging, part, stage, files, origin, sizes, sha) -> dict:
    """Copy one part's weights (fp16), config, tokenizer and manifest; adds to ``sizes`` and ``sha``
    and returns the part's record in the shipped manifest."""
    src = run_dir / part
    require_stage(src, stage, f"make demo-train (the {part} stage)")
    (staging / part).mkdir()
    manifest = read_manifest(src)
    for name in files:
        _fp16_copy(src / name, staging / part / name)
        digest = sha256_file(staging / part / name)
        manifest["outputs"][name] = {
            "sha256": digest,
            "trained_sha256": manifest["outputs"][name]["sha256"],
        }
        sizes[part if len(files) == 1 else f"{part}/{name}"] = (staging / part / name).stat().st_size
        sha[part] = digest
    shutil.copy2(src / CONFIG, staging / part / CONFIG)
    if (src / "tokenizer").is_dir():
        shutil.copytree(src / "tokenizer", staging / part / "tokenizer")
    manifest["shipped"] = origin
    for name, rec in manifest.get("inputs", {}).items():  # where the run was: not part of the models
        if isinstance(rec, dict) and "path" in rec:
            rec["path"] = name
    atomic_write_json(staging / part / "manifest.json", manifest)
    section = {"train-diffuser": "diffuser"}.get(manifest["stage"], part)
    section = "unimodal" if manifest["stage"].startswith("train-unimodal") else section
    return {
        "metrics": {k: v for k, v in manifest.get("metrics", {}).items() if k not in VOLATILE},
        "parameters": manifest.get("parameters", {}),
        "seed": manifest["config"][section]["train"]["seed"],
    }


def _volatile(path: Path) -> dict:
    """Take the times and speeds out of a shipped manifest (rewritten without them); returns them."""
    manifest = json.loads(path.read_text())
    taken = {k: manifest.pop(k) for k in VOLATILE if k in manifest}
    metrics = manifest.get("metrics", {})
    taken |= {k: metrics.pop(k) for k in VOLATILE if k in metrics}
    atomic_write_json(path, manifest)
    return taken


def import_demo(run_dir: Path, force: bool = False, source: Path | None = None) -> list[str]:
    """Copy the shipped demo run (models, examples) into ``run_dir``; returns the parts written."""
    source = source or shipped_run()
    missing = [p for p in PARTS if not (source / p / WEIGHTS).is_file()]
    if missing:
        raise InputError(
            f"{source} lacks {', '.join(missing)}; train the demo weights with `make demo-train`"
        )
    parts = [*PARTS, *optional_parts(source), EXAMPLES]
    parts += [EVALUATOR] if (source / EVALUATOR / CONFIG).is_file() else []
    existing = [p for p in parts if (run_dir / p).exists()]
    if existing and not force:
        raise InputError(
            f"{run_dir} already holds {', '.join(existing)}; pass --force to replace them with the demo weights"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    for part in parts:
        tmp = run_dir / f".{part}.import"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source / part, tmp)
        if (run_dir / part).exists():
            shutil.rmtree(run_dir / part)
        tmp.replace(run_dir / part)
    return parts


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "export":
        print("usage: python -m cdiff.stages.demo_weights export RUN", file=sys.stderr)
        return 2
    try:
        sizes = export(Path(argv[1]))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for part, n in sizes.items():
        print(f"{part}: {n / 2**20:.2f} MiB")
    print(f"shipped demo weights: {sum(sizes.values()) / 2**20:.2f} MiB in {shipped_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
