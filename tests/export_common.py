"""Our torch.export test (stand-in for transformers' ExportTesterMixin)."""


class ExportTesterMixin:
    pass
