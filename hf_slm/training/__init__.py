"""Training machinery shared by every model hf-slm trains."""

from hf_slm.training.schedule import warmup_cosine

__all__ = ["warmup_cosine"]
