"""Resolving a config: packaged YAML presets, ``--set`` overrides, building checked dataclasses, YAML out."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from cdiff.config.schema import Config, check_sample
from cdiff.errors import InputError

PRESETS = ("demo", "celeba256", "celeba512")


def preset_names() -> list[str]:
    """Names of the presets shipped inside the package."""
    files = resources.files("cdiff") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


def read_preset(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """Return ``(name, raw dict)`` for a packaged preset name or a YAML file path."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise InputError(
                f"config file not found: {path}; give a preset ({', '.join(preset_names())}) or a YAML path"
            )
        text, name = path.read_text(), path.stem
    else:
        resource = resources.files("cdiff") / "configs" / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise InputError(
                f"unknown preset '{name_or_path}'; choose one of {', '.join(preset_names())} or give a YAML path"
            )
        text, name = resource.read_text(), name_or_path
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"config {name_or_path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise InputError(f"config {name_or_path} must be a YAML mapping at the top level")
    return name, raw


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"data.num=100"`` → ``(["data", "num"], 100)``; the value is read as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set expects KEY=VALUE (e.g. data.num=100), got '{item}'")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); ``overrides`` is ``{"a.b": v}`` or ``["a.b=v"]``."""
    out = copy.deepcopy(raw)
    items = (
        [parse_override(o) for o in overrides]
        if isinstance(overrides, list)
        else [(k.split("."), v) for k, v in overrides.items()]
    )
    for keys, value in items:
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise InputError(f"config key '{'.'.join(keys)}': '{k}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return out


def build(cls: type, raw: dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from ``raw``, checking every key and value type."""
    if not isinstance(raw, dict):
        raise InputError(f"config key '{path.rstrip('.') or '<root>'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            close = [n for n in sorted(names) if n[:3] == str(key)[:3]]
            hint = (
                f" (did you mean {path}{close[0]}?)" if close else f"; known keys: {', '.join(sorted(names))}"
            )
            raise InputError(f"unknown config key '{path}{key}'{hint}")
    kwargs = {k: _coerce(hints[k], v, f"{path}{k}") for k, v in raw.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, f"{path}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(errors[0] if errors else f"config key '{path}': bad value {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise InputError(f"config key '{path}': {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise InputError(f"config key '{path}': expected a list, got {value!r}")
        (arg, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(arg, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"config key '{path}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InputError(f"config key '{path}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-4" as a string
            except ValueError:
                pass
        raise InputError(f"config key '{path}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise InputError(f"config key '{path}': expected a string, got {value!r}")
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples as lists), ready for YAML/JSON."""
    return _plain(dataclasses.asdict(cfg))


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def load_config(
    preset: str = "demo",
    overrides: dict[str, Any] | list[str] | None = None,
    sets: list[str] | None = None,
) -> Config:
    """Resolve a preset (name or path), then ``overrides`` (``{"a.b": v}`` or ``["a.b=v"]``), then
    ``sets`` (``["a.b=v"]``, the CLI's ``--set``) into a checked :class:`Config`."""
    _name, raw = read_preset(preset)
    raw = apply_overrides(raw, overrides or {})
    raw = apply_overrides(raw, list(sets or []))
    cfg = build(Config, raw)
    check_sample(cfg.sample, cfg.diffusion.timesteps)
    return cfg


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
