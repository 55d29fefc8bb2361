"""Output folders and files that are never lost or left half-written.

* :func:`atomic_open`: every results file (metrics, config, report, summary) is written
  to a temporary file in the same folder, flushed, ``fsync``-ed and renamed over the
  target (``os.replace``, atomic on POSIX): a reader sees the old file or the new one,
  never a torn one, whatever kills the writer (SIGKILL, a full disk).  The file gets
  the mode ``open`` would give it (0666 less the umask), not ``mkstemp``'s 0600.
* :func:`prepare_out`: an output folder is checked before any work is done.  A folder
  that already holds files is refused unless the caller continues that run
  (``resume``) or asked to replace it (``overwrite``).  A path that is a file, empty, or
  not writable is refused by name.  Nothing in the folder is touched here.
* ``--overwrite`` replaces only a run of the same command (:func:`run_of`: the marker
  ``.rnnjax-run`` a command writes into a folder it creates; a folder made before
  markers with an rnnjax ``config.json`` counts as a run of ``train``), never a folder
  that holds or lies inside a path the command reads (:func:`check_replaceable`); the
  old run goes, all of it (``checkpoints/``, ``best*``, results), only under the
  writer's lock and after every check (:func:`claim_out`).
* :func:`lock_out`: one writer per folder.  The writer holds an exclusive
  ``fcntl.flock`` on ``<out>/.rnnjax.lock`` (released by the kernel when the process
  dies, so a killed run never leaves a stale lock); a second writer is refused with the
  holder's pid.  (``flock`` is advisory and may not work across NFS clients.)
* :func:`default_out`: the folder a command writes to when no ``--out`` is given,
  ``runs/<command>/<YYYYmmdd-HHMMSS>``: a new one per run, so two runs never collide.
* :func:`writes_out`: the decorator of the applications: check ``out`` (and
  ``overwrite``), lock it for the call, set a replaced run aside (put back if the call
  fails), and remove the folder again when it was created by this call and the call
  failed before writing anything.

This module imports nothing from rnnjax (it sits at the bottom of the layers).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import tempfile
import time

LOCK = ".rnnjax.lock"


def _umask() -> int:
    """The process's umask (read from /proc where it can be, without changing it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """``open(path, mode)`` written atomically (``mode`` ``"w"`` or ``"wb"``): the data
    goes to a temporary file beside ``path`` that replaces ``path`` only once it is
    complete and durable; on an error the temporary file is removed and ``path`` is left
    as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would, not mkstemp's 0600
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


MARKER = ".rnnjax-run"
_ASIDE = ".rnnjax-replaced"
_HIDDEN = (LOCK, MARKER, _ASIDE)


def _contents(path):
    return sorted(n for n in os.listdir(path) if n not in _HIDDEN)


def run_of(path) -> str | None:
    """The command whose run the folder ``path`` is: the name in its marker file
    (``.rnnjax-run``, written when the command created the folder), or ``"train"`` for
    a folder made before markers that holds an rnnjax ``config.json`` (a JSON object
    with ``task`` and ``cell``); None for any other folder."""
    path = os.fspath(path)
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        pass
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    return "train" if isinstance(cfg, dict) and {"task", "cell"} <= set(cfg) else None


def _overlaps(a, b) -> bool:
    a, b = os.path.realpath(os.fspath(a)), os.path.realpath(os.fspath(b))
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or \
        b.startswith(a.rstrip(os.sep) + os.sep)


def check_replaceable(path, command: str | None, reads=(), *, name: str = "out") -> None:
    """Raise a one-line ``ValueError`` naming ``path`` unless ``--overwrite`` may replace
    it: a run of ``command`` (:func:`run_of`) that holds none of the paths ``reads``
    (what the command is told to read) and lies inside none of them."""
    path = os.fspath(path)
    flag = f"--{name.replace('_', '-')}"
    for r in reads:
        if r is not None and os.fspath(r) and _overlaps(path, r):
            raise ValueError(f"{name} {path!r} cannot be overwritten: it holds "
                             f"{os.fspath(r)!r}, which this command reads; choose "
                             f"another {flag}")
    if command is None:
        return
    owner = run_of(path)
    if owner != command:
        what = "is not an rnnjax run" if owner is None else f"is a run of {owner!r}"
        raise ValueError(f"{name} {path!r} cannot be overwritten: it {what}, not of "
                         f"{command!r} (--overwrite replaces only a run of the same "
                         f"command); choose another {flag} or empty it yourself")


def _mark(path, command) -> None:
    if command is not None:
        write_text(os.path.join(path, MARKER), command + "\n")


def prepare_out(path, resume: bool = False, overwrite: bool = False, *,
                name: str = "out", resumable: bool = True, command: str | None = None,
                reads=()) -> str:
    """Check the output folder ``path`` and create it; return it as a string.  Nothing
    that is already there is touched (see :func:`claim_out`).

    Raises ``ValueError`` (naming ``name``) if ``path`` is empty, an existing file, not
    writable, or a folder that already holds files while neither ``resume`` nor
    ``overwrite`` is set (the message offers ``--resume`` only when ``resumable``: the
    caller can continue a run).  With ``overwrite``, a folder that holds files must be a
    run of ``command`` that none of ``reads`` overlaps (:func:`check_replaceable`).  A
    new (or empty) folder gets the marker of ``command``.
    """
    if path is None or not os.fspath(path):
        raise ValueError(f"{name} must be a folder path, got {path!r}")
    path = os.fspath(path)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run in "
                         f"{name} {path!r}, or replace it, not both")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{name} must be a folder, got the existing file {path!r}")
    if os.path.isdir(path):
        held = _contents(path)
        if held and not (resume or overwrite):
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            resume_hint = "--resume to continue that run, " if resumable else ""
            raise ValueError(f"{name} {path!r} already holds files ({shown}); pass "
                             f"{resume_hint}--overwrite to replace it, or choose "
                             f"another --{name.replace('_', '-')}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{name} {path!r} is not writable")
        if held and overwrite:
            check_replaceable(path, command, reads, name=name)
        return path
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path!r} cannot be created: {parent!r} is not a "
                         "writable folder")
    os.makedirs(path, exist_ok=True)
    return path


def _remove(p) -> None:
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
    else:
        os.remove(p)


def claim_out(path, command: str | None, overwrite: bool = False) -> None:
    """Call holding the folder's lock, once every check has passed: with ``overwrite``,
    remove what the replaced run of ``command`` wrote (every entry of the folder, which
    :func:`prepare_out` has found to be that command's run: checkpoints, ``best*``,
    results); then write the marker of ``command``."""
    path = os.fspath(path)
    if overwrite:
        for n in os.listdir(path):
            if n != LOCK:
                _remove(os.path.join(path, n))
    if not os.path.exists(os.path.join(path, MARKER)):
        _mark(path, command)


def holds_files(path) -> bool:
    """Whether the folder ``path`` exists and holds anything but rnnjax's own lock and
    marker files."""
    return os.path.isdir(os.fspath(path)) and bool(_contents(os.fspath(path)))


def unwrite(path, names) -> bool:
    """After a call that started a new run in ``path`` failed: remove the files
    ``names`` it wrote (e.g. ``config.json``) if they are all the folder holds besides
    the lock and marker, so the rerun is a new run again, not one that needs
    ``--resume``.  Anything else in the folder (a record, a checkpoint) keeps it all.
    Returns whether it removed them."""
    path = os.fspath(path)
    held = _contents(path) if os.path.isdir(path) else []
    if not held or not set(held) <= set(names):
        return False
    for n in held:
        _remove(os.path.join(path, n))
    return True


class OutLock:
    """An exclusive lock on the output folder ``path`` (see :func:`lock_out`)."""

    def __init__(self, path, *, name: str = "out"):
        self.path = os.path.join(os.fspath(path), LOCK)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise ValueError(f"{name} {os.fspath(path)!r} is in use by another writer "
                             f"(pid {holder} holds {self.path}); wait for it to finish or "
                             f"choose another --{name.replace('_', '-')}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def lock_out(path, *, name: str = "out") -> OutLock:
    """Take the writer's lock of the folder ``path``; raise ``ValueError`` naming the
    holder's pid if another writer has it.  Release with ``.release()`` or ``with``."""
    return OutLock(path, name=name)


def default_out(command: str, root: str = "runs") -> str:
    """``root/command/YYYYmmdd-HHMMSS`` (local time): the default ``--out`` of a command,
    a fresh folder for every run started in a different second."""
    return os.path.join(root, command, time.strftime("%Y%m%d-%H%M%S"))


def _set_aside(path) -> str | None:
    """Move the entries of ``path`` (but the lock) into ``path/.rnnjax-replaced``
    (a stale one, left by a killed call, is removed first); return that folder."""
    aside = os.path.join(path, _ASIDE)
    if os.path.lexists(aside):
        _remove(aside)
    names = [n for n in os.listdir(path) if n != LOCK]
    if not names:
        return None
    os.mkdir(aside)
    for n in names:
        os.replace(os.path.join(path, n), os.path.join(aside, n))
    return aside


def _put_back(path, aside) -> None:
    """Undo :func:`_set_aside` after a failed call: what the call wrote goes, the
    replaced run comes back."""
    for n in os.listdir(path):
        if n not in (LOCK, _ASIDE):
            _remove(os.path.join(path, n))
    for n in os.listdir(aside):
        os.replace(os.path.join(aside, n), os.path.join(path, n))
    os.rmdir(aside)


def writes_out(fn=None, *, command: str | None = None, reads=()):
    """Decorate ``fn(out, *, ..., overwrite=False)``: check and create ``out``
    (:func:`prepare_out`), hold its lock during the call, and remove ``out`` again if
    this call created it and failed leaving nothing in it.

    ``command`` (default: ``fn``'s name without ``run_``) is the marker of the folders
    it writes; ``--overwrite`` replaces only a run of the same command, and never one
    that holds a path given in the keyword arguments named in ``reads``.  The replaced
    run is set aside under the lock and removed only when the call succeeds (a call
    that fails, e.g. on a bad option, puts it back)."""
    if fn is None:
        return functools.partial(writes_out, command=command, reads=reads)
    cmd = command or fn.__name__.removeprefix("run_")

    @functools.wraps(fn)
    def wrapper(out, *args, overwrite: bool = False, **kwargs):
        existed = out is not None and os.path.exists(os.fspath(out))
        out = prepare_out(out, overwrite=overwrite, resumable=False, command=cmd,
                          reads=[kwargs.get(k) for k in reads])
        ok, aside = False, None
        try:
            with lock_out(out):
                if overwrite:
                    aside = _set_aside(out)
                claim_out(out, cmd)
                try:
                    result = fn(out, *args, **kwargs)
                except BaseException:
                    if aside is not None:
                        _put_back(out, aside)
                        aside = None
                    raise
                if aside is not None:
                    shutil.rmtree(aside, ignore_errors=True)
            ok = True
            return result
        finally:
            if not ok and not existed and not _contents(out):
                shutil.rmtree(out, ignore_errors=True)

    return wrapper


__all__ = ["LOCK", "MARKER", "OutLock", "atomic_open", "check_replaceable", "claim_out",
           "default_out", "holds_files", "lock_out", "prepare_out", "run_of", "unwrite",
           "write_text", "writes_out"]
