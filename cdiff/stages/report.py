"""Stage ``report``: one HTML page for a run: its models, the evaluation, samples, influence maps and edits.

It collects what the other stages left in the run directory (nothing is computed here):
- the models: each stage's manifest (steps, wall time, its main metric);
- ``evaluation/``: the metrics table, the paper's claims checked pair by pair, the sample rows;
- ``samples/*/compare.png``: the methods side by side (``generate --method all``);
- ``samples/*/collaborative/visualize/*/``: influence maps, x_t and x_0 (``visualize``);
- ``edits/*/grid.png``: edits (``edit``).
Links are relative, so the page works wherever the run folder is copied.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdiff import locks, modalities
from cdiff.errors import InputError
from cdiff.rundir import atomic_write_text, check_writable
from cdiff.stages.evaluate_pages import claim_lines, judged, pairing, sets_word, table_rows


def stages() -> list[tuple[str, str, str | None, str | None]]:
    """(folder, name, main metric, its label) of every model a run may hold, in training order."""
    experts = [(m, f"{m} model", "final_loss", "final loss") for m in modalities.names()]
    return [
        ("vae", "VAE", "val_psnr_db", "validation PSNR (dB)"),
        *experts,
        ("diffuser", "dynamic diffusers", "final_loss", "final loss"),
        ("evaluator", "evaluator models", None, None),
    ]


@dataclass
class ReportResult:
    path: Path
    sections: list[str]


def _manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _img(path: Path, root: Path, width: int | None = None, alt: str = "") -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="{html.escape(path.relative_to(root).as_posix())}"{w} alt="{html.escape(alt)}">'


def _all_stages(run_dir: Path) -> list[tuple[str, str, str | None, str | None]]:
    """:func:`stages`, with each further diffuser set of the run after the first."""
    found = stages()
    at = next(i for i, st in enumerate(found) if st[0] == "diffuser") + 1
    more = []
    for folder in sorted(run_dir.glob("diffuser-*")):
        mods = folder.name.removeprefix("diffuser-").replace("-", ", ")
        more.append((folder.name, f"dynamic diffusers ({mods})", "final_loss", "final loss"))
    return found[:at] + more + found[at:]


def _minutes(seconds: float | None) -> str:
    """A stage's training time (the shipped demo models keep theirs in timings.json: none here)."""
    return "" if seconds is None else f"{seconds / 60:.1f} min"


def _models(run_dir: Path) -> str:
    rows = []
    for folder, name, key, label in _all_stages(run_dir):
        m = _manifest(run_dir / folder)
        if m is None:
            continue
        metrics = m.get("metrics", {})
        if folder == "evaluator":
            val = metrics.get("val", {})
            main = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in val.items())
        else:
            value = metrics.get(key)
            main = f"{label} {value:.4f}" if isinstance(value, int | float) else ""
        params = sum((m.get("parameters") or {}).values()) if isinstance(m.get("parameters"), dict) else None
        rows.append(
            f"<tr><td>{name}</td><td>{metrics.get('steps', '')}</td>"
            f"<td>{'' if params is None else f'{params:,}'}</td>"
            f"<td>{_minutes(m.get('wall_time_s'))}</td><td>{html.escape(main)}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<h2>Models</h2><table><tr><th>model</th><th>steps</th><th>parameters</th><th>training time</th>"
        f"<th>result</th></tr>{''.join(rows)}</table>"
    )


def _evaluations(run_dir: Path, root: Path) -> str:
    """Every evaluation of the run: ``evaluation/`` first, then others (``evaluation-three-way/``, ...)."""
    folders = sorted(
        run_dir.glob("evaluation*/metrics.json"), key=lambda p: (p.parent.name != "evaluation", p)
    )
    return "".join(_evaluation(f.parent, root) for f in folders)


def _evaluation(folder: Path, root: Path) -> str:
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    header, rows = table_rows(metrics)
    esc = html.escape
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows) + "</table>"
    claims = "".join(f"<li>{esc(line)}</li>" for line in claim_lines(metrics))
    s, mods = metrics["settings"], judged(metrics)
    scored = "; ".join(modalities.get(m).judged_by for m in mods if modalities.get(m).judged_by)
    samples = folder / "samples.png"
    return (
        f"<h2>Evaluation: {esc(', '.join(mods))} <small>({esc(folder.name)})</small></h2>"
        f"<p>{s['pairs']} validation {sets_word(mods)} ({esc(pairing(mods))}), "
        f"{s['solver']} {s['steps']} steps, guidance {s['guidance']}. {esc(scored)}; FD: Fréchet distance in the "
        f'classifier\'s features (not FID); in brackets the bootstrap 95 % interval. <a href="{esc((folder / "report.html").relative_to(root).as_posix())}">'
        f"Full evaluation report</a>.</p>{table}<h3>The paper's claims, pair by pair</h3><ul>{claims}</ul>"
        + (
            "<p>Rows: each modality's condition (its picture, or the face it came from), then per method the "
            f"image and what the judges read in it.</p>{_img(samples, root, alt='evaluation samples')}"
            if samples.is_file()
            else ""
        )
    )


def _samples(run_dir: Path, root: Path) -> str:
    compares = sorted((run_dir / "samples").glob("*/compare.png"), key=lambda p: p.stat().st_mtime)
    if not compares:
        return ""
    parts = [
        f'<h3>{html.escape(c.parent.name)} <small><a href="{html.escape((c.parent / "compare.html").relative_to(root).as_posix())}">'
        f"compare.html</a></small></h3>{_img(c, root, alt='methods side by side')}"
        for c in compares[-3:]
    ]
    return (
        "<h2>Samples: every method side by side</h2><p>Columns: the pictured conditions, then collaborative, "
        "composable, any smaller diffuser set (collaborative-&lt;set&gt;) and each model alone; the captions "
        "are in each compare.html.</p>" + "".join(parts)
    )


def _influence(run_dir: Path, root: Path) -> str:
    folders = sorted(
        {f.parent for f in (run_dir / "samples").glob("*/collaborative/visualize/*/influence_*.png")}
    )
    if not folders:
        return ""
    parts = []
    for d in folders[:3]:
        tiles = sorted(d.glob("influence_*.png")) + [
            d / n for n in ("pred_x0.png", "overlay.png") if (d / n).is_file()
        ]
        parts.append(f"<h3>{html.escape(d.name)}</h3>" + " ".join(_img(t, root, alt=t.stem) for t in tiles))
    index = folders[0].parent / "index.html"
    return (
        "<h2>Why it looks as it does: influence maps</h2><p>Per sampling step (t = 981 … 1), the weight the dynamic "
        "diffusers gave each model at each latent pixel; then the predicted x<sub>0</sub> per step and the mask over "
        f'the result. <a href="{html.escape(index.relative_to(root).as_posix())}">All pictures</a>.</p>'
        + "".join(parts)
    )


def _edits(run_dir: Path, root: Path) -> str:
    grids = sorted((run_dir / "edits").glob("*/grid.png"))
    if not grids:
        return ""
    parts = []
    for g in grids:
        m = _manifest(g.parent) or {}
        s = m.get("settings", {})
        what = ", ".join(k for k in (m.get("inputs") or {}) if k.startswith("target_")) or s.get("method", "")
        parts.append(
            f"<h3>{html.escape(g.parent.name)} <small>{html.escape(str(what))}</small></h3>{_img(g, root, alt=g.parent.name)}"
        )
    return "<h2>Edits</h2><p>Each row: the photo, the target, then the α sweep.</p>" + "".join(parts)


def run(run_dir: Path, force: bool = False) -> ReportResult:
    """Write ``RUN/report.html``, linking to the run's files by relative paths (replaced only with ``force``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} not found")
    out = run_dir / "report.html"
    check_writable(out, folder=False, option="--run")
    locks.acquire(out)  # one writer of the page at a time
    try:
        if out.exists() and not force:
            raise InputError(f"{out} exists; pass --force to write it again")
        found = _write(run_dir, out)
    finally:
        locks.release(out)
    return ReportResult(out, found)


def _write(run_dir: Path, out: Path) -> list[str]:
    """Write the page (atomically) and return the names of its sections."""
    root = run_abs = run_dir.resolve()
    sections = {
        "models": _models(run_abs),
        "evaluation": _evaluations(run_abs, root),
        "samples": _samples(run_abs, root),
        "influence maps": _influence(run_abs, root),
        "edits": _edits(run_abs, root),
    }
    found = [name for name, text in sections.items() if text]
    if not found:
        raise InputError(
            f"{run_dir} holds nothing to report yet; train, generate, evaluate or edit first (see make demo)"
        )
    atomic_write_text(
        out,
        "<!doctype html><html><head><meta charset='utf-8'><title>cdiff run report</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px} img{image-rendering:pixelated;"
        "max-width:100%} td,th{padding:4px 8px;text-align:right;border-bottom:1px solid #ddd} small{color:#555}"
        "</style></head><body>"
        f"<h1>cdiff: {html.escape(run_dir.name)}</h1>" + "".join(sections.values()) + "</body></html>\n",
    )
    return found
