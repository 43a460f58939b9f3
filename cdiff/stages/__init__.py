"""Pipeline stages. Each stage module exposes ``run(...)`` that reads like numbered steps.

Stages: ``prepare``, ``train_vae``, ``train_unimodal``, ``generate``. Shared helpers (not
stages): ``latents`` (the latent cache), ``conditions`` (raw conditions and the null
condition), ``sampling_common`` (drawing sample grids). Stages import helpers, never each
other; they exchange only files in the run directory.
"""
