"""The demo weights that ship inside the package, and the stage that puts them into a run.

``cdiff import-demo --run RUN`` writes the shipped VAE, text model, mask model and dynamic
diffusers into ``RUN/{vae,text,mask,diffuser}`` as finished stages, so ``generate``, ``edit``
and ``visualize`` work at once (``make demo``). The weights are fp16 safetensors (the models load
them into fp32); each folder keeps the manifest of the training run that made it.

They are never hand-made: ``make demo-train`` trains them from scratch with the committed code
and then runs ``python -m cdiff.stages.demo_weights export RUN``, which writes this folder.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

from safetensors.torch import load_file, save_file

from cdiff.errors import InputError
from cdiff.rundir import begin_stage, finish_stage, make_manifest, read_manifest, require_stage, sha256_file

PARTS = {  # folder → the stage that trains it
    "vae": "train-vae",
    "text": "train-unimodal-text",
    "mask": "train-unimodal-mask",
    "diffuser": "train-diffuser",
}
WEIGHTS, CONFIG, TRAINING = "model.safetensors", "config.json", "training-manifest.json"


def shipped_dir() -> Path:
    return Path(str(resources.files("cdiff") / "weights" / "demo"))


def _fp16_copy(src: Path, dst: Path) -> None:
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()
    }
    tmp = dst.with_name(f".{dst.name}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "dtype": "float16"})
    tmp.replace(dst)


def export(run_dir: Path, dest: Path | None = None) -> dict[str, int]:
    """Write the run's trained models (fp16) to ``dest`` (default: the package's demo folder)."""
    dest = dest or shipped_dir()
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    sizes, sha = {}, {}
    for part, stage in PARTS.items():
        src = run_dir / part
        require_stage(src, stage, f"make demo-train (the {part} stage)")
        (staging / part).mkdir()
        _fp16_copy(src / WEIGHTS, staging / part / WEIGHTS)
        sha[part] = sha256_file(staging / part / WEIGHTS)
        shutil.copy2(src / CONFIG, staging / part / CONFIG)
        if (src / "tokenizer").is_dir():
            shutil.copytree(src / "tokenizer", staging / part / "tokenizer")
        manifest = read_manifest(src)
        (staging / part / TRAINING).write_text(json.dumps(manifest, indent=2) + "\n")
        sizes[part] = (staging / part / WEIGHTS).stat().st_size
    # the diffusers name the experts they were trained with: the shipped (fp16) files
    record = json.loads((staging / "diffuser" / CONFIG).read_text())
    record["experts"] = {m: sha[m] for m in record["experts"]}
    (staging / "diffuser" / CONFIG).write_text(json.dumps(record, indent=2) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    staging.replace(dest)
    return sizes


def import_demo(run_dir: Path, force: bool = False, source: Path | None = None) -> list[str]:
    """Write the shipped demo models into ``run_dir`` as finished stages; returns the parts written."""
    source = source or shipped_dir()
    missing = [p for p in PARTS if not (source / p / WEIGHTS).is_file()]
    if missing:
        raise InputError(
            f"this installation has no shipped demo weights ({source} lacks {', '.join(missing)}); "
            "train them with `make demo-train`"
        )
    existing = [p for p in PARTS if (run_dir / p).exists()]
    if existing and not force:
        raise InputError(
            f"{run_dir} already holds {', '.join(existing)}; pass --force to replace them with the demo weights"
        )
    written = []
    for part, stage in PARTS.items():
        t0 = time.perf_counter()
        training = json.loads((source / part / TRAINING).read_text())
        partial, _ = begin_stage(run_dir / part, f"import-demo {part}\n", force=True)
        for item in (source / part).iterdir():
            if item.is_dir():
                shutil.copytree(item, partial / item.name, dirs_exist_ok=True)
            else:
                shutil.copy2(item, partial / item.name)
        manifest = make_manifest(
            stage,
            training.get("config", {}),
            {"shipped": str(source / part)},
            {WEIGHTS: {"sha256": sha256_file(partial / WEIGHTS)}},
            time.perf_counter() - t0,
            source="shipped demo weights (fp16), trained by make demo-train",
            metrics=training.get("metrics", {}),
            parameters=training.get("parameters", {}),
        )
        finish_stage(partial, run_dir / part, manifest)
        written.append(part)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "export":
        print("usage: python -m cdiff.stages.demo_weights export RUN", file=sys.stderr)
        return 2
    try:
        sizes = export(Path(argv[1]))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = sum(sizes.values())
    for part, n in sizes.items():
        print(f"{part}: {n / 2**20:.2f} MiB")
    print(f"shipped demo weights: {total / 2**20:.2f} MiB in {shipped_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
