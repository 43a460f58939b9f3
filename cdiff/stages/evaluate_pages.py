"""What ``cdiff evaluate`` shows: the results table (terminal and HTML), the claims, the sample rows.

Everything here reads the ``metrics.json`` record (and the images the stage kept); the columns come
from the evaluated modalities (:attr:`cdiff.modalities.Modality.columns`), in the diffusers' order.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cdiff import modalities
from cdiff.data.prepared import PreparedDataset, resize_image
from cdiff.imageio import grid, save_png

RELEASED = "collaborative-released"  # the collaborative method with the release's inference re-weighting
REAL, RECONSTRUCTED = "real faces", "VAE reconstructions"
SHORT_ROWS = {RELEASED: "collab. released", REAL: "ref: real", RECONSTRUCTED: "ref: VAE rec."}


def judged(metrics: dict[str, Any]) -> list[str]:
    """The evaluated modalities (older records, without the list: every registered one that was scored)."""
    mods = metrics["settings"].get("modalities")
    if mods is None:
        first = next(iter(metrics["methods"].values()), {})
        mods = [m for m in modalities.names() if set(modalities.get(m).columns) & set(first)]
    return [m for m in mods if m in modalities.names()]


def sets_word(mods: list[str]) -> str:
    """What one condition set of ``mods`` is called: "pairs" for two modalities, "triples" for three."""
    return {1: "faces", 2: "pairs", 3: "triples"}.get(len(mods), "condition sets")


def columns(mods: list[str]) -> list[tuple[str, str, str]]:
    """(score key, title, short title) of the evaluated modalities' columns, in table order."""
    return [(key, *titles) for m in mods for key, titles in modalities.get(m).columns.items()]


def table_rows(metrics: dict[str, Any], short: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows (methods, then references) of the results table, as text (``short``: for terminals)."""
    first = next(iter(metrics["methods"].values()))
    cols = columns(judged(metrics))
    main = {c for c, _, _ in cols}
    names = [k[: -len("_accuracy")] for k in first if k.endswith("_accuracy") and k not in main]
    quality = [k for k in first if k.startswith(("fd_", "fid_"))]
    header = [
        "",
        *[s if short else t for _, t, s in cols],
        *names,
        *[_quality_title(q, short) for q in quality],
    ]
    rows = []
    for group in ("methods", "references"):
        for name, rec in metrics[group].items():
            label = name if group == "methods" else f"reference: {name}"
            if short:
                label = SHORT_ROWS.get(name, label)
            spans = metrics.get("intervals", {}).get(name, {}) if group == "methods" else {}
            rows.append(
                [
                    label,
                    *[with_interval(rec.get(c), spans.get(c), short) for c, _, _ in cols],
                    *[fmt(rec.get(f"{a}_accuracy")) for a in names],
                    *[fmt(rec.get(q), 2) for q in quality],
                ]
            )
    return header, rows


def _quality_title(key: str, short: bool = False) -> str:
    if key == "fd_evaluator":
        return "FD (eval.)" if short else "FD (evaluator features)"
    return f"FID@{key[4:]}"


def with_interval(v: Any, span: list[float] | None, short: bool) -> str:
    """``0.922 (0.911–0.933)``, or ``0.922 ±0.011`` (``short``: a narrow terminal puts the half-width on a
    line of its own): a score with its bootstrap 95 % interval."""
    if span is None or v is None:
        return fmt(v)
    if short:
        return f"{fmt(v)} ±{(span[1] - span[0]) / 2:.3f}"
    return f"{fmt(v)} ({fmt(span[0])}–{fmt(span[1])})"


def fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def claim_lines(metrics: dict[str, Any]) -> list[str]:
    out, sets = [], sets_word(judged(metrics))
    for c in metrics["claims"]:
        what = re.sub(r"_f$", " F-score", c["metric"]).replace("_", " ")  # sketch_f → sketch F-score
        out.append(
            f"{c['method']} vs {c['other']}, {what}: {c['mean']:+.3f} (95 % CI {c['low']:+.3f} … {c['high']:+.3f}, "
            f"{c['pairs']} {sets}): {c['verdict']}"
        )
    return out


def fit(image: np.ndarray, size: int) -> np.ndarray:
    return image if image.shape[0] == size else np.asarray(resize_image(Image.fromarray(image), size))


def write_samples(
    folder: Path,
    pairs: list[dict[str, str]],
    data: PreparedDataset,
    images: dict[str, list[np.ndarray]],
    scores: dict[str, dict[str, torch.Tensor]],
    k: int,
) -> list[str]:
    """``samples.png``: per pair, each modality's condition (its picture, or the face it came from),
    then each method's image and what the judges read in it; the same pictures one by one for the page."""
    size = next(iter(images.values()))[0].shape[0]
    mods = list(pairs[0])
    conditions = [
        {m: fit(modalities.get(m).source_tile(data, p[m], size), size) for m in mods} for p in pairs[:k]
    ]
    tiles: list[np.ndarray] = []
    for j in range(k):
        tiles += list(conditions[j].values())
        for meth in images:
            tiles += [images[meth][j], *_readings(mods, scores[meth], j).values()]
    meta = {
        "layout": "rows: each modality's condition (its picture, or the face it came from), then per method "
        "its image and what the judges read in it",
        "modalities": mods,
        "methods": list(images),
        "captions": [
            {
                m: c
                for m in mods
                if (c := modalities.get(m).caption(modalities.get(m).dataset_value(data, p[m])))
            }
            for p in pairs[:k]
        ],
    }
    ncol = len(tiles) // k if k else 1
    save_png(folder / "samples.png", grid(tiles, ncol=ncol), meta)
    for j in range(k):
        for m, tile in conditions[j].items():
            save_png(folder / "conditions" / f"{j:03d}-{m}.png", tile)
        for meth in images:  # small pictures for the HTML page
            for m, picture in _readings(mods, scores[meth], j).items():
                save_png(folder / "readings" / meth / f"{j:03d}-{m}.png", picture)
    return list(_readings(mods, next(iter(scores.values())), 0)) if k else []


def _readings(mods: list[str], scores: dict[str, torch.Tensor], j: int) -> dict[str, np.ndarray]:
    out = {m: modalities.get(m).reading(scores, j) for m in mods}
    return {m: r for m, r in out.items() if r is not None}


def write_html(
    folder: Path, metrics: dict[str, Any], methods: list[str], k: int, readings: list[str]
) -> None:
    """``report.html``: the table, the claims, the evaluator's own accuracy, notes and the sample rows."""
    esc, s, mods = html.escape, metrics["settings"], judged(metrics)
    header, rows = table_rows(metrics)
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows) + "</table>"
    claims = "".join(f"<li>{esc(line)}</li>" for line in claim_lines(metrics))
    notes = "".join(f"<li>{esc(x)}</li>" for x in metrics["notes"])
    body = "".join(_sample_row(metrics["pairs"][j], j, mods, methods, readings) for j in range(k))
    heads = "".join(f"<th>{esc(_condition_title(m))}</th>" for m in mods)
    heads += "".join(f"<th>{esc(m)}</th>" for m in methods)
    ev_val = metrics.get("evaluator", {}).get("val") or {}
    ev_line = ", ".join(f"{key.replace('_', ' ')} {v:.3f}" for key, v in ev_val.items())
    scored = "; ".join(modalities.get(m).judged_by for m in mods if modalities.get(m).judged_by)
    (folder / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>cdiff evaluate</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em} img{image-rendering:pixelated}"
        "td,th{padding:4px 8px;text-align:center;border-bottom:1px solid #ddd} small{color:#555}</style></head><body>"
        f"<h1>Evaluation: {s['pairs']} validation {sets_word(mods)}</h1><p>{esc(_sentence(pairing(mods)))}; {s['solver']} with "
        f"{s['steps']} steps, guidance {s['guidance']}, pair k uses seed {s['seed']} + k for every method. "
        f"{esc(scored)}; FD: Fréchet distance to the validation images in the classifier's feature space "
        "(not FID).</p>"
        f"{table}<h2>The paper's claims, pair by pair</h2><ul>{claims}</ul>"
        f"<p><small>evaluator on the real validation images: {esc(ev_line)}</small></p><ul>{notes}</ul>"
        f"<h2>Samples</h2><p>Each method: the image, and beside it what the judges read.</p>"
        f"<table><tr>{heads}</tr>{body}</table></body></html>\n"
    )


def pairing(mods: list[str]) -> str:
    """How a pair's conditions are drawn, in words: "the mask of one face, the caption of another"."""
    return ", ".join(f"the {noun(m)} of {'one face' if i == 0 else 'another'}" for i, m in enumerate(mods))


def noun(m: str) -> str:
    """What one condition of ``m`` is called ("a caption" → "caption")."""
    words = (modalities.get(m).describes or m).split(" (")[0].split()
    return " ".join(words[1:] if words[0] in ("a", "an") and len(words) > 1 else words)


def short(m: str) -> str:
    """The short title of ``m``'s headline score ("mask", "text")."""
    mod = modalities.get(m)
    return mod.columns[mod.headline][1] if mod.headline in mod.columns else m


def _condition_title(m: str) -> str:
    return m if modalities.get(m).pictured else f"{m} (its face)"


def _sample_row(rec: dict[str, Any], j: int, mods: list[str], methods: list[str], readings: list[str]) -> str:
    esc = html.escape
    cells = ""
    for m in mods:
        caption = modalities.get(m).caption(rec["conditions"][m])
        under = f"<br><small>{esc(caption)}</small>" if caption else ""
        cells += f'<td><img src="conditions/{j:03d}-{m}.png" width="96" alt="{esc(m)}">{under}</td>'
    for meth in methods:
        s = rec[meth]
        heads = [
            f"{short(m)} {fmt(s.get(modalities.get(m).headline))}" for m in mods if modalities.get(m).headline
        ]
        hits = [
            f"{key[:-4]} {'✓' if v == 1 else '✗'}"
            for key, v in s.items()
            if key.endswith("_hit") and v is not None
        ]
        pictures = "".join(
            f'<img src="readings/{meth}/{j:03d}-{m}.png" width="96" alt="{esc(m)} reading">' for m in readings
        )
        name = f"{j:03d}-{rec['seed']:06d}.png"
        cells += (
            f'<td><img src="{meth}/{name}" width="96" alt="{esc(meth)}">{pictures}<br>'
            f"<small>{esc(' · '.join(heads))} · {esc(' '.join(hits))}</small></td>"
        )
    return f"<tr>{cells}</tr>"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
