"""The README works as written (issue 26).

Every fenced block of README.md is a shell block, a Python block or a ``text`` block. Every shell command
is classified and checked:

- ``geogan ...`` (also ``.venv/bin/geogan``): run in-process (typer's CliRunner on ``geogan.cli.app``) in
  one temporary folder, in README order, with the repository's ``sample_data`` linked in; relative
  output paths land in that folder;
- ``bash scripts/setup.sh [--dev]`` and the test command: the quick start must be exactly two commands,
  the second exactly what ``.ci/run`` runs (CI executes both setup commands for real);
- ``pip install ...``: the extras exist in pyproject.toml and the torch pin is the one setup.sh installs;
- ``python benchmarks/X.py ...``: the script exists, takes every option given, and the result file it
  names exists.

A command that fits none of these fails the test, so a new README command gets a check. Python blocks are
executed in a temporary folder. The benchmark tables of the README and docs/benchmarks.md are checked
figure by figure against the result files and model cards they name, and every relative link in README.md
and docs/*.md must point to an existing file (and heading).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
SETUP_SCRIPT = ROOT / "scripts" / "setup.sh"
INPUT_DIRS = ("sample_data",)  # repository folders README commands read from; linked, never written
SHELL_LANGS = {"bash", "sh", "shell", "console"}
TEXT_LANGS = {"text"}
RESULT_DIRS = (ROOT / "benchmarks" / "results", ROOT / "geogan" / "data" / "models")


# ---------------------------------------------------------------------------------------------- parsing
def fenced_blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, body, section heading) of every fenced code block, in order."""
    blocks, section, lang, body = [], "", None, []
    for line in text.splitlines():
        if lang is None and line.startswith("#"):
            section = line.lstrip("#").strip()
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks.append((lang, "\n".join(body), section))
                lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, "README.md has an unclosed code block"
    return blocks


def shell_commands(body: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, split at ``&&``."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            commands.append(tokens[:cut])
            tokens = tokens[cut + 1:]
    return commands


def command_lines(body: str) -> list[str]:
    """A shell block's command lines as written (continuations joined, comments and blanks dropped)."""
    lines = [line.split(" #")[0].strip() for line in body.replace("\\\n", " ").splitlines()]
    return [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


def readme_blocks() -> list[tuple[str, str, str]]:
    return fenced_blocks(README.read_text())


def readme_commands() -> list[list[str]]:
    return [cmd for lang, body, _ in readme_blocks() if lang in SHELL_LANGS for cmd in shell_commands(body)]


# ------------------------------------------------------------------------------------ classification
def kind_of(cmd: list[str]) -> str | None:
    if cmd[0] in ("geogan", ".venv/bin/geogan"):
        return "geogan"
    if cmd[:2] == ["bash", "scripts/setup.sh"]:
        return "setup"
    if cmd == [".venv/bin/python", "-m", "pytest", "-q"]:
        return "tests"
    if cmd[:2] == ["pip", "install"]:
        return "pip"
    if len(cmd) > 1 and cmd[0] in (".venv/bin/python", "python3", "python") and cmd[1].startswith("benchmarks/"):
        return "benchmark"
    return None


def test_every_block_and_command_is_known():
    for lang, body, section in readme_blocks():
        assert lang in SHELL_LANGS | TEXT_LANGS | {"python"}, (
            f"README section {section!r}: a code block tagged {lang!r}; tag it bash, python or text")
    unknown = [" ".join(cmd) for cmd in readme_commands() if kind_of(cmd) is None]
    assert not unknown, f"README commands no test checks (teach tests/test_readme.py about them): {unknown}"


def test_readme_is_a_short_users_document():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    assert not re.search(r"\bsession\b", text, re.I)


# --------------------------------------------------------------------------------------- quick start
def test_quick_start_is_two_commands_that_ci_and_setup_run():
    blocks = [(lang, body) for lang, body, section in readme_blocks() if section == "Quick start"]
    assert len(blocks) == 1 and blocks[0][0] in SHELL_LANGS
    lines = command_lines(blocks[0][1])
    assert len(lines) == 2, f"the quick start must stay two commands, found {lines}"
    render, tests = lines
    assert render.startswith("bash scripts/setup.sh && .venv/bin/geogan render "), render
    assert tests == "bash scripts/setup.sh --dev && .venv/bin/python -m pytest -q"
    ci_lines = [" ".join(line.split()) for line in CI_SCRIPT.read_text().splitlines()]
    assert tests in ci_lines, ".ci/run must run the README's test command word for word"


def test_setup_commands_match_setup_sh():
    script = SETUP_SCRIPT.read_text()
    for cmd in readme_commands():
        if kind_of(cmd) == "setup":
            assert set(cmd[2:]) <= {"--dev"}, f"scripts/setup.sh takes only --dev: {cmd}"
    assert '"--dev"' in script and "pip install -q -e ." in script
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("geogan") == "geogan.cli:main", "setup.sh's .venv/bin/geogan comes from this entry point"


def test_pip_commands_name_real_extras_and_the_setup_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_spec = re.search(r"GEOGAN_TORCH_SPEC:-([^}]+)}", SETUP_SCRIPT.read_text()).group(1)
    for cmd in readme_commands():
        if kind_of(cmd) != "pip":
            continue
        for arg in cmd[2:]:
            extra = re.fullmatch(r"\.\[(\w+)\]", arg)
            if extra:
                assert extra.group(1) in project["optional-dependencies"], arg
            elif arg.startswith("torch"):
                assert arg == torch_spec, f"README pins {arg}, scripts/setup.sh installs {torch_spec}"
            else:
                assert arg == ".", f"pip argument the test does not know: {arg}"


def test_benchmark_commands_use_real_scripts_options_and_results():
    for cmd in readme_commands():
        if kind_of(cmd) != "benchmark":
            continue
        script = ROOT / cmd[1]
        assert script.is_file(), cmd[1]
        source = script.read_text()
        for opt in (a for a in cmd[2:] if a.startswith("--")):
            assert f'"{opt}"' in source, f"{cmd[1]} has no option {opt}"
        if "--json" in cmd:
            out = cmd[cmd.index("--json") + 1]
            assert not out.startswith("benchmarks/results/") or (ROOT / out).is_file(), f"no result file {out}"


# ------------------------------------------------------------------------------------------ execution
@pytest.fixture
def readme_dir(tmp_path, monkeypatch):
    """A scratch folder laid out like the repository root for the README's inputs."""
    for name in INPUT_DIRS:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check_paths_stay_inside(cmd: list[str]) -> None:
    for arg in cmd[1:]:
        assert not (arg.startswith(("/", "~")) or ".." in Path(arg).parts), (
            f"README command writes or reads outside the working folder: {' '.join(cmd)}")


def _out_path(args: list[str]) -> Path | None:
    return Path(args[args.index("--out") + 1]) if "--out" in args else None


def test_readme_geogan_commands_run(readme_dir):
    from typer.testing import CliRunner

    from geogan.cli import app

    runner = CliRunner()
    commands = [cmd for cmd in readme_commands() if kind_of(cmd) == "geogan"]
    assert any(cmd[1] == "render" for cmd in commands)
    for cmd in commands:
        _check_paths_stay_inside(cmd)
        args = cmd[1:]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"README command failed: {' '.join(cmd)}\n{result.output}"
        out = _out_path(args)
        if out is not None:
            assert (readme_dir / out).exists() and (readme_dir / out).resolve().is_relative_to(readme_dir)
    _check_render_outputs(readme_dir, commands)


def _check_render_outputs(folder: Path, commands: list[list[str]]) -> None:
    import rasterio

    for cmd in commands:
        if cmd[1] != "render":
            continue
        out = folder / _out_path(cmd[1:])
        with rasterio.open(out / "aerial.tif") as a, rasterio.open(out / "classes.tif") as c:
            assert a.count == 3 and a.crs == c.crs and a.transform == c.transform
            assert a.read(1, out_shape=(64, 64)).std() > 0, f"{out}/aerial.tif is flat"


def test_readme_python_snippets_run(readme_dir):
    snippets = [body for lang, body, _ in readme_blocks() if lang == "python"]
    assert snippets
    for i, source in enumerate(snippets):
        exec(compile(source, f"README.md python block {i + 1}", "exec"), {"__name__": "__readme__"})


# ------------------------------------------------------------------------------------------- figures
def table_rows(text: str) -> list[list[str]]:
    """Rows of every markdown table with ``file`` and ``key`` columns, as [value cells..., file, key]."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
        elif "file" in header and "key" in header and not set(line) <= set("|-: "):
            f, k = header.index("file"), header.index("key")
            rows.append(cells[1:f] + [cells[f], cells[k]])
    return rows


def lookup(data, dotted: str):
    """``data`` at a dotted path; a dict key that holds dots itself (a file name) is matched whole."""
    parts, i = dotted.split("."), 0
    while i < len(parts):
        if isinstance(data, list):
            data, i = data[int(parts[i])], i + 1
            continue
        j = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in data), None)
        assert j is not None, f"no key {'.'.join(parts[i:])!r} under {dotted!r}"
        data, i = data[".".join(parts[i:j])], j
    return data


def result_file(name: str) -> Path:
    found = [d / name for d in RESULT_DIRS if (d / name).is_file()]
    assert found, f"no result file or model card named {name}"
    return found[0]


@pytest.mark.parametrize("page", ["README.md", "docs/benchmarks.md"])
def test_benchmark_figures_match_their_files(page):
    rows = table_rows((ROOT / page).read_text())
    assert rows, f"{page} has no figure table with file and key columns"
    for row in rows:
        *values, file_cell, key_cell = row
        data = json.loads(result_file(file_cell.strip("`")).read_text())
        keys = re.findall(r"`([^`]+)`", key_cell)
        shown = re.findall(r"\d[\d,]*(?:\.\d+)?", " ".join(values))
        assert len(shown) == len(keys), f"{page}: {len(shown)} figures for {len(keys)} keys in {row}"
        for figure, key in zip(shown, keys):
            decimals = len(figure.split(".")[1]) if "." in figure else 0
            actual = f"{float(lookup(data, key)):.{decimals}f}"
            assert actual == figure.replace(",", ""), f"{page}: {key} is {actual} in {file_cell}, shown {figure}"


# --------------------------------------------------------------------------------------------- links
def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in md.read_text().splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("page", ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
def test_relative_links_point_to_existing_files(page):
    md = ROOT / page
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        assert dest.exists(), f"{page}: link to {target}, which does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page}: link to {target}: no such heading"
