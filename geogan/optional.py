"""Optional third-party packages: whether one is installed, and the one-line error where PyTorch is needed.

PyTorch is the ``torch`` extra (``pip install 'geogan[torch]'``), not a requirement: a plain ``pip install geogan``
renders the default model (a texture bank, numpy only) and, with the ``onnx`` extra, models exported by
``geogan export-onnx``. The neural models on the torch runtime, training, evaluation and the export itself need
PyTorch; without it they stop with :func:`require_torch`'s one line instead of an ImportError. This module
imports nothing heavy.
"""

from __future__ import annotations

import importlib.util

from .errors import InputError

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_INSTALL_HINT = f"pip install 'geogan[torch]' (CPU-only: add --extra-index-url {CPU_TORCH_INDEX})"
ONNX_ALTERNATIVE = ", or use --runtime onnx with a model exported by 'geogan export-onnx'"


def has_module(name: str) -> bool:
    """Whether ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def torch_missing_message(what: str, alternative: str = "") -> str:
    """One line: ``what`` (e.g. "geogan train", "model 'fast'") needs PyTorch, and how to install it."""
    return f"{what} needs PyTorch, which is not installed; {TORCH_INSTALL_HINT}{alternative}"


def require_torch(what: str, alternative: str = "") -> None:
    """Raise an InputError with :func:`torch_missing_message` unless PyTorch can be imported."""
    if not has_module("torch"):
        raise InputError(torch_missing_message(what, alternative))


def is_missing_torch(exc: BaseException) -> bool:
    """Whether ``exc`` is the import of PyTorch itself failing because it is not installed (not a broken
    PyTorch, whose missing part would be named ``torch.something``)."""
    return isinstance(exc, ModuleNotFoundError) and exc.name == "torch"
