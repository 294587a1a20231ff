"""Subcommands that live in their own modules: a broken import shows its real error, never "No such command";
only a missing optional third-party package leaves commands out, with a line saying how to install it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from geogan.cli import EXTENSION_MODULES, register_extensions


def _write_module(tmp_path, monkeypatch, name: str, first_line: str) -> str:
    (tmp_path / f"{name}.py").write_text(
        f"{first_line}\n\n\ndef register(app):\n    @app.command('{name.replace('_', '-')}')\n"
        "    def command():\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_broken_geogan_import_raises_its_real_error(monkeypatch):
    monkeypatch.delitem(sys.modules, "geogan.mesh_cli", raising=False)
    monkeypatch.setitem(sys.modules, "geogan.mesh", None)  # importing geogan.mesh now fails
    with pytest.raises(ImportError, match="geogan.mesh"):
        register_extensions(typer.Typer(), EXTENSION_MODULES)


def test_a_missing_required_package_raises(tmp_path, monkeypatch):
    name = _write_module(tmp_path, monkeypatch, "geogan_test_needs_pkg", "import geogan_no_such_package_xyz")
    with pytest.raises(ModuleNotFoundError, match="geogan_no_such_package_xyz"):
        register_extensions(typer.Typer(), (name,))


def test_a_missing_optional_package_leaves_only_its_commands_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask", None)  # as if the 'dask' extra were not installed
    needs_dask = _write_module(tmp_path, monkeypatch, "geogan_test_needs_dask", "import dask")
    plain = _write_module(tmp_path, monkeypatch, "geogan_test_plain", "import json")
    app = typer.Typer()
    register_extensions(app, (needs_dask, plain))
    assert [c.name for c in app.registered_commands] == ["geogan-test-plain"]
    line = capsys.readouterr().err
    assert "geogan_test_needs_dask" in line and "'dask'" in line and "pip install 'geogan[dask]'" in line


def test_geogan_mesh_help_with_a_broken_import_shows_the_real_error():
    """The user-visible case: before, this answered "No such command 'mesh'" (exit 2)."""
    code = ("import sys; sys.modules['geogan.mesh'] = None; sys.argv = ['geogan', 'mesh', '--help']; "
            "from geogan.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "No such command" not in proc.stdout + proc.stderr
    assert "geogan.mesh" in proc.stderr and "ModuleNotFoundError" in proc.stderr
