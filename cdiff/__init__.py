"""cdiff: Collaborative Diffusion for multi-modal face generation and editing.

``from cdiff import Pipeline`` is the Python API (:mod:`cdiff.api`); it is imported on first use,
so ``import cdiff`` and the command line start without loading torch.
"""

__version__ = "0.1.0"
__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str):
    if name in ("Pipeline", "GenerationResult", "EditSession"):
        from cdiff import api

        return getattr(api, name)
    raise AttributeError(f"module 'cdiff' has no attribute {name!r}")
