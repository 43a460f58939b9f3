"""Stage ``prepare``: build the dataset folder every later stage reads (see cdiff.data.prepared).

1. Open the source (synthetic, celeba or codiff) and list its ids; the last ``val_count``
   ids (or ``val_fraction`` of them) form the validation split, as in the release.
2. Process samples in parallel (crop, resize, check classes, write image + index-PNG mask),
   logging each finished id so an interrupted run resumes where it stopped.
3. Write the captions table and split lists, then the tokenizer (WordPiece trained on the
   training captions, or BERT's from a local copy).
4. Hash the outputs, write the manifest last and move the folder into place.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdiff.config import Config
from cdiff.data import prepared
from cdiff.data.sources import SampleError, make_source
from cdiff.data.tokenizer import load_bert, train_wordpiece
from cdiff.errors import InputError
from cdiff.rundir import StageOutput, atomic_write_text, combine_hashes, hash_tree, sha256_file

PROGRESS = "progress.jsonl"


@dataclass
class PrepareReport:
    out: Path
    total: int
    kept: dict[str, int]  # split -> count
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    resumed_from: int = 0
    wall_time_s: float = 0.0
    vocab_size: int = 0


def plan(cfg: Config) -> dict[str, Any]:
    """What ``prepare`` would do, checking inputs but writing nothing (``--dry-run``)."""
    source = make_source(cfg.data)
    ids = source.ids()
    n_val = val_size(len(ids), cfg.data)
    return {
        "source": source.name,
        "inputs": source.inputs(),
        "samples": len(ids),
        "train": len(ids) - n_val,
        "val": n_val,
    }


def run(
    cfg: Config,
    out: Path,
    *,
    force: bool = False,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareReport:
    """Prepare the dataset described by ``cfg.data`` into ``out``."""
    stage = StageOutput(out, force)  # before any set-up: finished work is refused at once
    data = cfg.data
    # 1. source and split
    source = make_source(data)
    ids = source.ids()
    val = set(ids[len(ids) - val_size(len(ids), data) :])
    partial = stage.begin(cfg)
    # 2. samples
    done = _read_progress(partial / PROGRESS)
    todo = [i for i in ids if i not in done]
    _process_or_explain(source, todo, partial, data, skip_bad, done, progress, len(ids))
    # 3. tables and tokenizer
    records = _split_records(ids, done, val, partial, source.name)
    _write_tables(partial, records)
    _write_preview(
        partial, [r["id"] for r in records if r["split"] == "val"][:12] or [records[0]["id"]], data
    )
    tokenizer = _make_tokenizer(data, [r["caption"] for r in records if r["split"] == "train"])
    tokenizer.save_pretrained(str(partial / prepared.TOKENIZER))
    # 4. manifest, then move into place
    skipped = {i: done[i] for i in ids if "skipped" in done[i]}
    (partial / PROGRESS).unlink(missing_ok=True)
    report = PrepareReport(
        out=out,
        total=len(ids),
        kept=dict(Counter(r["split"] for r in records)),
        skipped=Counter(s["skipped"] for s in skipped.values()),
        resumed_from=len(ids) - len(todo),
        wall_time_s=stage.elapsed(),
        vocab_size=len(tokenizer),
    )
    stage.finish(
        "prepare",
        cfg,
        _hash_inputs(source.inputs(), done),
        _outputs(partial),
        counts={
            "candidates": len(ids),
            "kept": report.kept,
            "skipped": dict(report.skipped),
            "resumed_from": report.resumed_from,
        },
        skipped=[{"id": i, "reason": s["skipped"], "detail": s["detail"]} for i, s in skipped.items()],
        tokenizer={"kind": data.tokenizer, "vocab_size": len(tokenizer), "max_length": data.max_length},
    )
    return report


def val_size(n: int, data: Any) -> int:
    """How many of the last ids are validation: ``val_count``, else ``val_fraction`` of ``n``."""
    if data.val_count is not None:
        if not 0 <= data.val_count < n:
            raise InputError(
                f"data.val_count={data.val_count} must be between 0 and the number of samples - 1 ({n - 1})"
            )
        return data.val_count
    if not 0.0 <= data.val_fraction < 1.0:
        raise InputError(f"data.val_fraction={data.val_fraction} must be in [0, 1)")
    return min(n - 1, max(1 if n > 1 and data.val_fraction > 0 else 0, round(n * data.val_fraction)))


# ---- step 2: parallel, resumable sample processing ------------------------------------------

_WORK: tuple | None = None  # (source, out, data): set once per worker process


def _init_worker(work: tuple) -> None:
    global _WORK
    _WORK = work


def _process_one(sample_id: str) -> dict[str, Any]:
    source, out, data = _WORK
    try:
        sample = source.load(sample_id)
        record = prepared.write_sample(
            sample, out, data.resolution, data.image_format, data.jpeg_quality, data.sketch
        )
        return {"id": sample_id, "record": record, "digests": sample.digests}
    except SampleError as exc:
        return {"id": sample_id, "skipped": exc.reason, "detail": str(exc)}
    except InputError as exc:  # e.g. class ids out of range found by the shared checks
        return {"id": sample_id, "skipped": "bad mask", "detail": str(exc)}


def _map(work: tuple, ids: list[str], workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 1 or len(ids) < 64:
        _init_worker(work)
        yield from map(_process_one, ids)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(work,)) as pool:
        yield from pool.imap_unordered(
            _process_one, ids, chunksize=max(1, min(64, len(ids) // (workers * 8)))
        )


def _process_all(source, todo, partial, data, skip_bad, done, progress, total) -> None:
    (partial / prepared.IMAGES).mkdir(exist_ok=True)
    (partial / prepared.MASKS).mkdir(exist_ok=True)
    (partial / prepared.SKETCHES).mkdir(exist_ok=True)
    workers = data.workers or os.cpu_count() or 1
    with open(partial / PROGRESS, "a", encoding="utf-8") as log:
        for result in _map((source, partial, data), todo, workers):
            if "skipped" in result and not skip_bad:
                raise InputError(result["detail"])
            done[result["id"]] = result
            log.write(json.dumps(result) + "\n")
            log.flush()
            if progress is not None:
                progress(len(done), total)


def _process_or_explain(source, todo, partial, data, skip_bad, done, progress, total) -> None:
    """:func:`_process_all`, a bad sample's error saying how to go on (a run with nothing done is removed)."""
    try:
        _process_all(source, todo, partial, data, skip_bad, done, progress, total)
    except InputError as exc:
        finished = sum(1 for r in done.values() if "record" in r)
        if finished == 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise InputError(f"{exc}; fix the input or pass --skip-bad to skip such samples") from None
        raise InputError(
            f"{exc}; fix the input or pass --skip-bad (the {finished} samples done so far are kept "
            f"in {partial} and the next run resumes)"
        ) from None


def _read_progress(path: Path) -> dict[str, dict[str, Any]]:
    """Results of an interrupted run (a torn last line is ignored: that sample is redone)."""
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[item["id"]] = item
    return done


# ---- steps 3-4 ------------------------------------------------------------------------------


def _split_records(ids: list[str], done: dict, val: set[str], partial: Path, source: str) -> list[dict]:
    """The kept samples' records in id order, each with its split; fails when none is for training."""
    records = [
        dict(done[i]["record"], split="val" if i in val else "train") for i in ids if "record" in done[i]
    ]
    if not any(r["split"] == "train" for r in records):
        shutil.rmtree(partial, ignore_errors=True)
        raise InputError(f"no usable training samples in {source} input; check the paths")
    return records


def _write_tables(out: Path, records: list[dict[str, Any]]) -> None:
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    atomic_write_text(out / prepared.CAPTIONS, "\n".join(lines) + "\n")
    for split in ("train", "val"):
        ids = [r["id"] for r in records if r["split"] == split]
        atomic_write_text(out / prepared.SPLITS / f"{split}.txt", "".join(f"{i}\n" for i in ids))


def _write_preview(out: Path, ids: list[str], data: Any) -> None:
    """``preview.png``: validation images, their masks in the palette, and the two blended."""
    import numpy as np
    from PIL import Image

    from cdiff.data.masks import colorize, read_mask
    from cdiff.imageio import grid, save_png

    tiles = []
    for i in ids:
        with Image.open(out / prepared.IMAGES / f"{i}.{data.image_format}") as im:
            image = np.asarray(im.convert("RGB").resize((128, 128), Image.Resampling.LANCZOS))
        label = read_mask(out / prepared.MASKS / f"{i}.png", size=128)
        mask = colorize(label)
        tiles += [image, mask, (0.55 * image + 0.45 * mask).astype(np.uint8)]
    save_png(out / "preview.png", grid(tiles, ncol=6), {"layout": "image, mask, overlay; validation samples"})


def _make_tokenizer(data, train_captions: list[str]):
    if data.tokenizer == "wordpiece":
        return train_wordpiece(train_captions, data.vocab_size, data.max_length)
    return load_bert(data.tokenizer_path, data.max_length)


def _hash_inputs(inputs: dict[str, Any], done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Input paths with content hashes: files directly, per-sample files combined into one hash."""
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, str) and Path(value).is_file():
            out[key] = {"path": value, "sha256": sha256_file(value)}
        else:
            out[key] = value
    digests = [(f"{i}/{name}", h) for i, r in done.items() for name, h in r.get("digests", [])]
    if digests:
        out["sample_files"] = {"files": len(digests), "sha256": combine_hashes(digests)}
    return out


def _outputs(folder: Path) -> dict[str, Any]:
    return {
        prepared.IMAGES: hash_tree(folder / prepared.IMAGES),
        prepared.MASKS: hash_tree(folder / prepared.MASKS),
        prepared.SKETCHES: hash_tree(folder / prepared.SKETCHES),
        prepared.CAPTIONS: {"sha256": sha256_file(folder / prepared.CAPTIONS)},
        prepared.SPLITS: hash_tree(folder / prepared.SPLITS),
        prepared.TOKENIZER: hash_tree(folder / prepared.TOKENIZER),
    }
