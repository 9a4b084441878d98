"""TorchScript export of the encoder and the decoder (see :mod:`sam.export.wrappers`)."""

from sam.export.torchscript import ExportReport, export_model

__all__ = ["ExportReport", "export_model"]
