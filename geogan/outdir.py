"""One writer per output folder, and a folder's outputs replaced as a set.

A run that writes into a folder holds an OS lock on ``FOLDER/.geogan.lock``
(``flock``; ``msvcrt.locking`` on Windows) from its first write to its last
rename; the OS drops the lock when the process dies, however it dies. A
second run into a folder whose lock is held is refused at once (one line
naming the folder and the fix); it does not wait.

Everything a run writes goes to its own hidden staging folder in the output
folder, ``.geogan-PID-TOKEN.partial`` (unique per run): temporary files, and
the finished outputs in ``new/``. The commit (:func:`commit`) then

1. writes ``COMMIT`` (the list of output names) into the staging folder: from
   here on the new set is the one that counts;
2. moves *every* old output of the set aside into ``old/`` of the staging
   folder, and only then
3. moves every new output into place, and removes the staging folder.

A kill at any point leaves the visible outputs all from the old set or all
from the new set, never a mix (during steps 2 and 3 some of them may be
missing). The next run into the folder, holding the lock, finishes an
interrupted commit (a staging folder with ``COMMIT``: steps 2 and 3 again,
they are idempotent) and deletes any other staging folder and the hidden
``.NAME.STAGE.partial`` files of older geogan versions (:func:`recover`).
SIGINT and SIGTERM wait while steps 1-3 run (main thread only), so an
interrupt never splits a set either.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
import signal
import threading
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .errors import OutputError

log = logging.getLogger("geogan")

LOCK_NAME = ".geogan.lock"
COMMIT_NAME = "COMMIT"
STAGING_RE = re.compile(r"^\.geogan-\d+-[0-9a-f]{8}\.partial$")
#: hidden temporary files of geogan versions before the staging folder (one folder, fixed names)
LEGACY_PARTIAL_RE = re.compile(r"^\.[^/]+\.(stream|vrt|cog|ovr\d+)\.partial(\.aux\.xml|\.ovr)?$")

_committed: deque[Path] = deque(maxlen=256)  # outputs this process moved into place (for a true message)
_committed_lock = threading.Lock()


def committed_paths() -> list[Path]:
    """The outputs this process has moved into place since :func:`forget_committed`."""
    with _committed_lock:
        return list(_committed)


def forget_committed() -> None:
    with _committed_lock:
        _committed.clear()


#: errnos of file systems without locks (some network mounts): the run goes on unlocked, with a warning
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, getattr(errno, "EOPNOTSUPP", errno.ENOSYS),
             getattr(errno, "ENOTSUP", errno.ENOSYS)}


def _lock_fd(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


class FolderLock:
    """The exclusive lock on ``folder`` (``folder/.geogan.lock``); :meth:`acquire` refuses at once when held.

    The lock file is removed on release (and left behind, harmless, by a killed process: the OS releases its
    lock and the next run reuses the file).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise OutputError(f"cannot lock output directory '{self.folder}' ({exc.strerror}); "
                                  "choose a writable --out") from None
            try:
                locked = _lock_fd(fd)
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    os.close(fd)
                    raise OutputError(f"cannot lock output directory '{self.folder}' ({exc.strerror}); "
                                      "choose another --out") from None
                log.warning("'%s' cannot be locked (%s); make sure no other geogan run writes there at the "
                            "same time", self.folder, exc.strerror)
                locked = True
            if not locked:
                os.close(fd)
                raise OutputError(f"another geogan run is writing into '{self.folder}'{_holder(self.path)}; "
                                  "wait for it to finish or choose another --out")
            if self._same_file(fd):
                break
            os.close(fd)  # the holder removed the file while we opened it: lock the one there now
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode
        except OSError:
            pass  # Windows cannot remove an open file; the next run reuses it
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def new_staging(folder: Path) -> Path:
    """Create this run's hidden staging folder (with ``new/``) in ``folder``; the caller holds the lock."""
    staging = Path(folder) / f".geogan-{os.getpid()}-{secrets.token_hex(4)}.partial"
    (staging / "new").mkdir(parents=True)
    return staging


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return  # e.g. directories on Windows
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _roll_forward(staging: Path, folder: Path, names: Sequence[str]) -> list[Path]:
    """Steps 2 and 3 of the commit (idempotent): old outputs aside, new ones in; returns the paths moved in."""
    pending = [n for n in names if (staging / "new" / n).exists()]
    (staging / "old").mkdir(exist_ok=True)
    for name in pending:  # a name whose new file is still staged shows an old output (or none)
        if (folder / name).exists():
            os.replace(folder / name, staging / "old" / name)
    moved = []
    for name in pending:
        os.replace(staging / "new" / name, folder / name)
        moved.append(folder / name)
    _fsync(folder, directory=True)
    shutil.rmtree(staging, ignore_errors=True)
    return moved


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive in the block are delivered after it (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None and signal.getsignal(sig) is not None:  # None: a handler installed outside Python
            previous[sig] = signal.signal(sig, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):
            signal.raise_signal(sig)


def commit(staging: Path, folder: Path, names: Sequence[str]) -> list[Path]:
    """Replace the outputs ``names`` of ``folder`` by ``staging/new/NAME``, as a set (see the module doc)."""
    for name in names:
        _fsync(staging / "new" / name)
    tmp = staging / f"{COMMIT_NAME}.tmp"
    tmp.write_text(json.dumps({"files": list(names)}), encoding="utf-8")
    _fsync(tmp)
    with signals_deferred():
        os.replace(tmp, staging / COMMIT_NAME)
        _fsync(staging, directory=True)
        moved = _roll_forward(staging, folder, names)
        with _committed_lock:
            _committed.extend(moved)
    return moved


def is_committed(staging: Path) -> bool:
    """Whether ``staging``'s set was committed (its replacement must be finished, never thrown away)."""
    return (staging / COMMIT_NAME).exists()


def discard(staging: Path) -> None:
    """Delete this run's staging folder, unless it was committed (then the next run finishes it)."""
    if not is_committed(staging):
        shutil.rmtree(staging, ignore_errors=True)


def _committed_names(staging: Path) -> list[str] | None:
    try:
        files = json.loads((staging / COMMIT_NAME).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list) or not all(isinstance(f, str) and f and "/" not in f and "\\" not in f
                                              and f not in (".", "..") for f in files):
        return None
    return files


def recover(folder: Path) -> None:
    """Finish the interrupted commits and delete the leftovers of earlier runs in ``folder``.

    The caller holds ``folder``'s lock (and has no staging folder there yet), so no run is writing there.
    Only geogan's own names are touched: staging folders ``.geogan-PID-TOKEN.partial`` and the
    ``.NAME.(stream|vrt|cog|ovrN).partial`` files of older versions.
    """
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    for entry in entries:
        if STAGING_RE.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            names = _committed_names(entry)
            if names is not None:
                try:
                    moved = _roll_forward(entry, Path(folder), names)
                except OSError as exc:
                    raise OutputError(f"cannot finish replacing the outputs of an interrupted run in '{folder}' "
                                      f"({exc.strerror or exc}); move the files of '{entry.name}/new' there by "
                                      "hand or choose another --out") from None
                log.warning("finished replacing the outputs of an interrupted run in '%s' (%s)", folder,
                            ", ".join(p.name for p in moved) or "nothing left to move")
            else:
                shutil.rmtree(entry, ignore_errors=True)
        elif LEGACY_PARTIAL_RE.match(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)


def prepare(folder: Path) -> None:
    """Check that no other run is writing into ``folder`` (refuse at once) and clean what earlier runs left."""
    with FolderLock(folder):
        recover(folder)
