"""Triton Python-backend entry point (CPU variant); the logic lives in sam.export.triton_python_backend."""

from sam.export.triton_python_backend import TorchScriptModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
