"""cdiff: Collaborative Diffusion for multi-modal face generation and editing."""

__version__ = "0.1.0"
