"""What ``evaluate`` judges: the methods (``all`` expanded over the run's models), the seeded
mismatched condition sets, and the paper's claims to check."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from cdiff import modalities
from cdiff.data.prepared import PreparedDataset
from cdiff.errors import InputError
from cdiff.models.collab import check_released
from cdiff.stages import generate as gen
from cdiff.stages.evaluate_pages import RELEASED
from cdiff.stages.run import Run, set_name


def methods() -> list[str]:
    return [*gen.methods(), RELEASED]


def expand_methods(asked: list[str], run: Run, mods: list[str]) -> list[str]:
    """``asked`` with ``all`` replaced by every method the run has models for over ``mods`` (see
    :func:`~cdiff.stages.compare.methods_for`), each named once; unknown names are a one-line error."""
    from cdiff.stages.compare import methods_for

    have = methods_for(run, mods, strict=gen.ALL in asked)
    out: list[str] = []
    for m in asked:
        out += have if m == gen.ALL else [m]
    sets = [x for x in have if x.startswith(gen.SET_METHOD)]
    unknown = [m for m in out if m not in methods() and m not in sets]
    if unknown or not out:
        bad = unknown[0] if unknown else ""
        hint = f" (the run's sets within {', '.join(mods)}: {', '.join(sets)})" if sets else ""
        raise InputError(f"unknown --method '{bad}'; choose from {', '.join(methods())}, {gen.ALL}{hint}")
    if RELEASED in out:
        check_released(mods)  # before anything is sampled
    return list(dict.fromkeys(out))


def judged_modalities(run: Run, mods: list[str] | None) -> list[str]:
    """What an evaluation combines: the diffuser set for ``mods`` (None: the run's default), trained order."""
    return run.diffuser_modalities([m for m in modalities.names() if run.has(m)], mods)


def planned_methods(asked: list[str], run_dir: Path, mods: list[str] | None) -> list[str]:
    """The methods ``evaluate`` would run (for ``--dry-run``): ``asked`` expanded when the run can tell."""
    try:
        run = Run(run_dir)
        return expand_methods(asked, run, judged_modalities(run, mods))
    except InputError:
        return asked


def choose_pairs(data: PreparedDataset, n: int, seed: int, mods: list[str]) -> list[dict[str, str]]:
    """n condition sets ``{modality: validation id}`` in a seeded order: set k takes modality i's
    condition from face k + i (the mask of face k, the caption of face k + 1), never all from one face."""
    val = data.split("val")
    low = max(2, len(mods))  # fewer would take two conditions of a set from one face
    if n < low or n > len(val):
        raise InputError(f"--pairs must be between {low} and the {len(val)} validation images, got {n}")
    order = np.random.default_rng(seed).permutation(len(val))[:n]
    ids = [val[i] for i in order]
    return [{m: ids[(k + i) % n] for i, m in enumerate(mods)} for k in range(n)]


def claims_of(mods: list[str]) -> list[tuple[str, str, str]]:
    """The paper's claims, "method scores higher than other on metric": collaborative beats composable
    on every modality's headline score, beats each smaller set of experts (three-way: each pair) on the
    conditions that set leaves out, and each uni-modal model on the others' conditions."""
    heads = [(m, modalities.get(m).headline) for m in mods if modalities.get(m).headline]
    versus_composable = [("collaborative", "composable", h) for _, h in heads]
    smaller = [s for k in range(len(mods) - 1, 1, -1) for s in itertools.combinations(mods, k)]
    versus_sets = [
        ("collaborative", gen.SET_METHOD + set_name(s), h) for s in smaller for m, h in heads if m not in s
    ]
    versus_experts = [("collaborative", o, h) for m, h in heads for o in mods if o != m]
    return versus_composable + versus_sets + versus_experts
