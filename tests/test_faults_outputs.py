"""Faults around the outputs (issue 27): two runs into one folder, kills between the renames, SIGTERM, stale
temporary files of killed runs, a full disk. The output folder must always hold one consistent set."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geogan.grid import grid_from_bbox
from geogan.write import OutputSet, RasterSpec, check_outputs

from test_cli import one_line_error

NAMES = ("aerial.tif", "height.tif", "classes.tif")
RENDER_NAMES = NAMES + ("classes.qml", "classes.tif.aux.xml")  # a render also writes the class names


def write_set(folder: Path, size_px: int, value: int) -> None:
    """Write aerial/height/classes of ``size_px`` x ``size_px`` px (all ``value``) into ``folder``."""
    grid = grid_from_bbox((0, 0, size_px, size_px), "EPSG:3857", "EPSG:3857", 1.0)
    specs = {"aerial": RasterSpec(folder / "aerial.tif", 3, "uint8"),
             "height": RasterSpec(folder / "height.tif", 1, "float32", -9999.0),
             "classes": RasterSpec(folder / "classes.tif", 1, "uint8", overview_resampling="nearest")}
    with OutputSet(grid, specs, block_px=128) as out:
        out.write("aerial", 0, np.full((3, size_px, size_px), value, np.uint8))
        out.write("height", 0, np.full((size_px, size_px), value, np.float32))
        out.write("classes", 0, np.full((size_px, size_px), value % 5, np.uint8))


def visible_sizes(folder: Path) -> dict[str, int]:
    """Width of every output in ``folder`` (all square)."""
    sizes = {}
    for name in NAMES:
        if (folder / name).exists():
            with rasterio.open(folder / name) as ds:
                sizes[name] = ds.width
    return sizes


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "geogan.cli", *map(str, args)]


def _wait_for_partial(folder: Path, proc, timeout_s: float = 240) -> bool:
    """Wait until ``proc`` has hidden temporary files in ``folder`` (it is writing)."""
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if folder.exists() and any(p.name.endswith(".partial") for p in folder.iterdir()):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def test_second_render_into_a_busy_folder_is_refused_and_the_first_writes_one_set(tmp_path, tiny_model):
    out = tmp_path / "out"
    common = ["--out", out, "--model", tiny_model, "--tile-size", "128", "--overlap", "32", "--overwrite"]
    first = subprocess.Popen(_cli("-q", "render", *common, "--gsd", "1.0"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for_partial(out, first), first.communicate()
        first.send_signal(signal.SIGSTOP)  # the first run holds the folder, mid-write, for as long as we like
        second = subprocess.run(_cli("-q", "render", *common, "--gsd", "2.0"), capture_output=True, text=True,
                                timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=300)
    one_line_error(second, 2, "another geogan run is writing into", str(out), "choose another --out")
    assert first.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(RENDER_NAMES)  # no temporary file, no lock file left
    with rasterio.open(out / "aerial.tif") as a, rasterio.open(out / "height.tif") as h, \
            rasterio.open(out / "classes.tif") as c:
        assert a.shape == h.shape == c.shape and a.transform == h.transform == c.transform
        assert a.read().any()  # not the all-black image of two runs sharing temporary files
        assert abs(a.transform.a - 1.0 / np.cos(np.radians(60.4))) < 0.2  # the first run's 1 m grid


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from test_faults_outputs import write_set
    folder, kill_at = Path(sys.argv[1]), int(sys.argv[3])
    real_replace, calls = os.replace, [0]

    def replace(src, dst, *args, **kwargs):
        if str(folder) in str(src) or str(folder) in str(dst):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    write_set(folder, int(sys.argv[2]), 200)
""")


@pytest.mark.parametrize("kill_at", [1, 2, 3, 5, 6])
def test_sigkill_between_the_renames_leaves_one_set_and_a_rerun_finishes_it(tmp_path, kill_at):
    """Killed before the n-th rename of the commit: the outputs visible are all old or all new; the next run
    into the folder finishes the commit (or drops the uncommitted staging folder) and writes its own set."""
    folder = tmp_path / "out"
    folder.mkdir()
    write_set(folder, 200, 100)
    p = subprocess.run([sys.executable, "-c", _KILLER, folder, "300", str(kill_at), Path(__file__).parent],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    sizes = set(visible_sizes(folder).values())
    assert len(sizes) <= 1, visible_sizes(folder)  # never a new aerial beside old heights and classes
    check_outputs([folder / n for n in NAMES], overwrite=True)  # what every run does first
    assert visible_sizes(folder) == dict.fromkeys(NAMES, 200 if kill_at == 1 else 300)
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
    write_set(folder, 250, 50)
    assert visible_sizes(folder) == dict.fromkeys(NAMES, 250)
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)


def test_a_render_after_a_kill_mid_commit_succeeds(tmp_path, tiny_model):
    folder = tmp_path / "out"
    folder.mkdir()
    write_set(folder, 200, 100)
    p = subprocess.run([sys.executable, "-c", _KILLER, folder, "300", "3", Path(__file__).parent],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    r = subprocess.run(_cli("render", "--out", folder, "--model", tiny_model, "--tile-size", "128", "--overlap",
                            "32", "--gsd", "2.0", "--overwrite"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "interrupted run" in r.stderr  # it says it finished the killed run's replacement first
    assert sorted(x.name for x in folder.iterdir()) == sorted(RENDER_NAMES)
    with rasterio.open(folder / "aerial.tif") as a, rasterio.open(folder / "classes.tif") as c:
        assert a.shape == c.shape and a.shape != (300, 300)


def test_ctrl_c_during_the_renames_waits_for_them_and_says_what_was_written(tmp_path, monkeypatch, capsys):
    import typer

    from geogan.cli import run_guarded

    folder = tmp_path / "out"
    folder.mkdir()
    write_set(folder, 200, 100)
    real_replace, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the renames
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own Ctrl-C, whatever ran before
    try:
        with pytest.raises(typer.Exit) as exit_:
            run_guarded(lambda: write_set(folder, 300, 200))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert exit_.value.exit_code == 130
    assert visible_sizes(folder) == dict.fromkeys(NAMES, 300)  # the set was finished, then the interrupt
    line, = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert line.startswith("error: interrupted after writing") and "aerial.tif" in line, line
    assert "no output was written" not in line


def test_sigterm_is_handled_like_ctrl_c(tmp_path, tiny_model):
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli("render", "--out", out, "--model", tiny_model, "--tile-size", "128", "--overlap",
                                 "32", "--gsd", "0.5"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for_partial(out, proc), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert errors == ["error: terminated (SIGTERM); no output was written"], err
    assert "Traceback" not in err
    assert list(out.iterdir()) == []  # no temporary file, no lock file


def test_stale_temporary_files_of_killed_runs_are_removed(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    stale = [folder / ".aerial.tif.stream.partial", folder / ".height.tif.ovr2.partial",
             folder / ".classes.tif.cog.partial", folder / ".aerial.tif.vrt.partial.aux.xml"]
    for path in stale:
        path.write_bytes(b"x" * 1000)
    dead = folder / ".geogan-12345-0123abcd.partial"  # an uncommitted staging folder of a killed run
    (dead / "new").mkdir(parents=True)
    (dead / "new" / "aerial.tif").write_bytes(b"half")
    mine = [folder / "notes.partial", folder / ".hidden", folder / "my.tif", folder / ".my.tif.partial"]
    for path in mine:
        path.write_bytes(b"user data")
    write_set(folder, 64, 7)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*NAMES, *(p.name for p in mine)])


def test_a_held_folder_lock_is_refused_and_its_files_left_alone(tmp_path):
    from geogan.errors import OutputError
    from geogan.outdir import FolderLock

    folder = tmp_path / "out"
    folder.mkdir()
    running = folder / ".geogan-999-0123abcd.partial"  # the staging folder of the run holding the lock
    (running / "new").mkdir(parents=True)
    with FolderLock(folder):
        with pytest.raises(OutputError, match="another geogan run is writing into .*; wait for it"):
            check_outputs([folder / n for n in NAMES], overwrite=True)
        with pytest.raises(OutputError, match="another geogan run"):
            write_set(folder, 64, 7)
        assert running.is_dir()
    write_set(folder, 64, 7)
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)


class _FullDisk:
    """A dataset whose writes fail like a full disk (or quota)."""

    def __init__(self, ds, code: int) -> None:
        self._ds, self._code = ds, code

    def write(self, *args, **kwargs):
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._ds, name)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EDQUOT, "disk quota exceeded")])
def test_full_disk_or_quota_is_one_line_naming_the_file_and_the_space(tmp_path, monkeypatch, code, words):
    import geogan.write as write_mod
    from geogan.errors import RenderError

    real_open = write_mod._open_hidden
    monkeypatch.setattr(write_mod, "_open_hidden", lambda *a, **k: _FullDisk(real_open(*a, **k), code))
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(RenderError) as exc:
        write_set(folder, 700, 9)
    message = str(exc.value)
    assert message.startswith(f"{words} while writing '{folder / 'aerial.tif'}' (needs up to about ")
    assert message.endswith(" MB); free disk space or choose another --out") and "\n" not in message
    assert list(folder.iterdir()) == []  # nothing half-written, no lock file


def _limit_file_size():
    import resource
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))


def test_a_real_write_failure_prints_one_line_not_gdal_messages(tmp_path, tiny_model):
    """GDAL and libtiff print 7-13 lines of their own for a failed write; only geogan's line is left."""
    out = tmp_path / "out"
    p = subprocess.run(_cli("-q", "render", "--out", out, "--model", tiny_model, "--tile-size", "128", "--overlap",
                            "32", "--gsd", "1.0"), capture_output=True, text=True, preexec_fn=_limit_file_size,
                       timeout=300)
    assert p.returncode == 1, p.stderr
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: file size limit reached while writing '"), p.stderr
    assert "ulimit -f" in lines[0]
    assert list(out.iterdir()) == []


def test_a_failed_rename_after_the_commit_is_finished_by_the_next_run(tmp_path, monkeypatch):
    from geogan.errors import RenderError

    folder = tmp_path / "out"
    folder.mkdir()
    write_set(folder, 200, 100)
    real_replace, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) >= 6:  # from the second new output moving in (e.g. the old one held open on Windows)
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(RenderError, match="replacing the outputs in .* failed .*; the next geogan run into this "
                                          "directory finishes it"):
        write_set(folder, 300, 200)
    assert set(visible_sizes(folder).values()) == {300}  # one new output in place, the other two not yet
    from geogan.errors import OutputError
    with pytest.raises(OutputError, match="cannot finish replacing the outputs of an interrupted run in .*; move "
                                          "the files of '.geogan-.*/new' there by hand or choose another --out"):
        check_outputs([folder / n for n in NAMES], overwrite=True)  # the rename still fails
    monkeypatch.setattr(os, "replace", real_replace)
    check_outputs([folder / n for n in NAMES], overwrite=True)
    assert visible_sizes(folder) == dict.fromkeys(NAMES, 300)
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
