"""The conditions of a generation: JSONL files of condition sets, ``--text``/``--mask``/... options paired
by position, or (none given) the run's example pairs or first validation faces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdiff import modalities
from cdiff.errors import InputError

if TYPE_CHECKING:
    from cdiff.stages.generate import GenerateRequest
    from cdiff.stages.run import Run

SOURCE_KEY = "{}_of"  # JSONL keys that say where a modality's condition came from (and "caption_of")


def read_pairs_file(path: Path) -> list[dict[str, str]]:
    """A JSONL file, one condition set per line: ``{"mask": "m.png", "text": "..."}`` (any registered modality)."""
    if not path.is_file():
        raise InputError(f"--from-file: {path} not found")
    known = set(modalities.names())
    pairs = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"--from-file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON lines"
        ) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(
                f'{path}:{n} is not JSON; each line must be like {{"mask": "m.png", "text": "..."}}'
            ) from None
        sources = {SOURCE_KEY.format(m) for m in known} | {"caption_of"}
        if not isinstance(rec, dict) or not set(rec) <= known | sources or not set(rec) & known:
            raise InputError(
                f"{path}:{n}: expected an object with the keys {', '.join(sorted(known))} (any of them; "
                f"optionally where each came from: {', '.join(sorted(sources))}), got {line.strip()[:80]}"
            )
        bad = [k for k in rec if k in known and not isinstance(rec[k], str)]
        if bad:
            raise InputError(f"{path}:{n}: {bad[0]} must be a string, got {json.dumps(rec[bad[0]])[:40]}")
        base = path.parent.resolve()
        pairs.append({k: modalities.get(k).resolve_path(v, base) for k, v in rec.items() if k in known})
    if not pairs:
        raise InputError(f"--from-file: {path} holds no condition lines")
    return pairs


def condition_rows(req: GenerateRequest, mods: list[str], run: Run) -> list[dict[str, Any]]:
    """One dict per condition set: ``{modality: value}`` (a caption, a mask path or array, ``val:<id>``)."""
    given = {m: list(v) for m, v in req.conditions.items() if v}
    modalities.check(list(given), "conditions")
    extra = [m for m in given if m not in mods]
    if extra:
        raise InputError(
            f"--method {req.method} does not use {_option(extra[0])}; it conditions on {', '.join(mods)}"
        )
    if req.pairs:
        if given:
            raise InputError("give conditions either with --from-file or with options like --text, not both")
        for n, rec in enumerate(req.pairs, 1):
            missing = [m for m in mods if m not in rec]
            if missing:
                raise InputError(
                    f"--from-file line {n} lacks {', '.join(missing)} (--method {req.method} needs {', '.join(mods)})"
                )
        return [{m: rec[m] for m in mods} for rec in req.pairs]
    if not given:
        return _val_rows(run, mods, req.val_conditions)
    missing = [m for m in mods if m not in given]
    if missing:
        raise InputError(
            f"--method {req.method} needs {' and '.join(_option(m) for m in mods)}; {_option(missing[0])} is missing"
        )
    n = max(len(v) for v in given.values())
    for m, v in given.items():
        if len(v) not in (1, n):
            raise InputError(
                f"{len(v)} {_option(m)} for {n} of the other condition: give one, or as many (paired by position)"
            )
    return [{m: given[m][k if len(given[m]) > 1 else 0] for m in mods} for k in range(n)]


def _option(m: str) -> str:
    return modalities.get(m).option or f"--cond {m}=..."


def _val_rows(run: Run, mods: list[str], n: int) -> list[dict[str, Any]]:
    """The run's example pairs (shipped demo runs), else its first validation pairs."""
    examples = run.root / "examples" / "pairs.jsonl"
    rows = read_pairs_file(examples)[:n] if examples.is_file() else []
    if rows and all(m in rec for rec in rows for m in mods):
        return [{m: rec[m] for m in mods} for rec in rows]
    if run.data is None:
        absent = [m for m in mods if any(m not in rec for rec in rows)]
        lacks = f" ({examples} has no {', '.join(absent)})" if rows else ""
        raise InputError(
            f"no conditions given and {run.root} has no data to take validation pairs from{lacks}; give "
            f"conditions ({', '.join(_option(m) for m in mods)}) or run cdiff prepare --run {run.root}"
        )
    ids = run.data.split("val")[:n]
    return [{m: modalities.get(m).dataset_value(run.data, i) for m in mods} for i in ids]
