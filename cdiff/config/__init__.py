"""Configuration: dataclass schemas, YAML presets shipped in the package, ``--set`` overrides.

A config is resolved in three steps (NVlabs/edm style): the preset (a packaged
``cdiff/configs/<name>.yaml`` or a path to a YAML file), then CLI shortcuts, then
``--set a.b=value`` overrides. Unknown or mistyped keys are errors that name the key path.
The resolved config is written into the run directory before a stage does any work.

The package: :mod:`~cdiff.config.schema` (the dataclasses, :func:`check_sample`) and
:mod:`~cdiff.config.loading` (presets, overrides, building and checking, YAML); every name
is importable from here.
"""

from __future__ import annotations

from cdiff.config.loading import (
    PRESETS,
    apply_overrides,
    build,
    load_config,
    parse_override,
    preset_names,
    read_preset,
    to_dict,
    to_yaml,
)
from cdiff.config.schema import (
    Config,
    DataConfig,
    DiffuserConfig,
    DiffusionConfig,
    EditConfig,
    EvaluateConfig,
    EvaluatorConfig,
    MixedPrecision,
    SampleConfig,
    SketchConfig,
    Source,
    TextEncoderConfig,
    TokenizerKind,
    TrainConfig,
    UNetConfig,
    UnimodalConfig,
    VAEConfig,
    check_sample,
)

__all__ = [
    "PRESETS",
    "Config",
    "DataConfig",
    "SketchConfig",
    "DiffuserConfig",
    "DiffusionConfig",
    "EditConfig",
    "EvaluateConfig",
    "EvaluatorConfig",
    "MixedPrecision",
    "SampleConfig",
    "Source",
    "TextEncoderConfig",
    "TokenizerKind",
    "TrainConfig",
    "UNetConfig",
    "UnimodalConfig",
    "VAEConfig",
    "apply_overrides",
    "build",
    "check_sample",
    "load_config",
    "parse_override",
    "preset_names",
    "read_preset",
    "to_dict",
    "to_yaml",
]
