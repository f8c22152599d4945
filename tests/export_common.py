"""Our `torch.export` test (stand-in for transformers' `ExportTesterMixin`, which lives in transformers'
repository, not in its source distribution): every model class exports with `torch.export.export` and the
exported program computes what the eager model computes."""

from __future__ import annotations

import torch


class ExportTesterMixin:
    def _export_inputs(self, inputs: dict) -> dict:
        """The inputs to export with: the tester's own (a test class may override), no cache object out."""
        kwargs = dict(inputs)
        if "input_ids" in kwargs:
            kwargs["use_cache"] = False
        return kwargs

    def test_torch_export(self):
        if not self.test_torch_exportable:
            self.skipTest(getattr(self, "torch_export_skip_reason", "this model cannot be exported"))
        for model_class in self.all_model_classes:
            config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
            model = model_class(config).eval()
            kwargs = self._export_inputs(inputs)
            with torch.no_grad():
                eager = model(**kwargs)
                program = torch.export.export(model, args=(), kwargs=kwargs, strict=False)
                exported = program.module()(**kwargs)
            key = "logits" if "logits" in eager else next(iter(eager.keys()))
            torch.testing.assert_close(exported[key], eager[key])
