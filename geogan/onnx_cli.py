"""The ``geogan export-onnx`` command: a model's generator as an ONNX file, for onnxruntime (no PyTorch)."""

from __future__ import annotations

from pathlib import Path

import typer

from .zoo import DEFAULT_GENERATOR

DEFAULT_OPSET = 21  # geogan.onnx_export.DEFAULT_OPSET (not imported here: that module imports torch)


def register(app: typer.Typer) -> None:
    """Add the ``export-onnx`` command to ``app``."""

    @app.command("export-onnx")
    def export_onnx_command(
        model: str = typer.Option(DEFAULT_GENERATOR, "--model", help="Model name (see 'geogan models') or card path."),
        out: Path = typer.Option(..., "--out", help="The .onnx file to write, e.g. models/default.onnx; a copy of "
                                                    "the card (.json, naming the ONNX file) and the weights "
                                                    "(.safetensors) are written beside it."),
        opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX operator set (18..28); the default runs on "
                                                                 "onnxruntime 1.18 and newer."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
    ) -> None:
        """Export a model's generator to ONNX (checked against PyTorch: at most 1 grey level apart)."""
        from .cli import run_guarded

        def go():
            from .errors import InputError
            from .optional import require_torch

            require_torch("geogan export-onnx", ", or export on a machine that has it and copy the files")
            from .infer import is_texture_bank
            from .zoo import resolve_model

            if is_texture_bank(resolve_model(model)):
                raise InputError(f"model '{model}' is a texture bank (real photo patches), not a generator: there is "
                                 "nothing to export, and it renders without PyTorch as it is; export e.g. --model fast")
            from .onnx_export import export_onnx

            return export_onnx(model, out, opset=opset, overwrite=overwrite)

        report = run_guarded(go)
        typer.echo(f"wrote {report.onnx_path} (opset {report.opset}; largest |onnx - torch| "
                   f"{report.max_grey_difference:.3g} grey levels), {report.card_path} and {report.weights_path}")
