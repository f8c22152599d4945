"""Our generation tests (stand-in for transformers' GenerationTesterMixin; filled below)."""


class GenerationTesterMixin:
    pass
