"""Writing files whole or not at all: to a temporary name beside the target, then a rename.

A reader (a tool waiting on a ready file, a DAW importing a recording) never sees half a file,
and an interrupted write leaves the old file, or none. `StagedFiles` does the same for a set of
files that belong together (a rehearsal's `set.mid`, `set.wav` and `summary.json`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType


def write_atomically(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # the temporary file must not stay behind
        raise


def _new_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside `path` to write it under, open for writing, with the mode a plain
    `open` would give it (0o666 less the umask; mkstemp's 0o600 would make the files private)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_json_atomically(path: str | Path, value: object) -> None:
    write_atomically(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())


class StagedFiles:
    """Files in one folder that appear together or not at all.

    Each is written under a temporary name beside its target (`stage`), and `commit` renames them
    all into place with Ctrl-C held off until it is done. Leaving the `with` block without a
    commit (an error, Ctrl-C) removes the temporaries, and the folders staging made.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._staged: dict[Path, Path] = {}  # target → its temporary file
        self._made: list[Path] = []  # folders made for the files, innermost first

    def stage(self, name: str) -> Path:
        """A new, empty temporary file to write; `commit` puts it in place as `folder/name`."""
        if not self.folder.is_dir():
            self._made = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
            self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = _new_temporary(self.folder / name)
        os.close(fd)
        self._staged[self.folder / name] = tmp
        return tmp

    def commit(self) -> None:
        with _ctrl_c_held():
            for target, temporary in self._staged.items():
                os.replace(temporary, target)
            self._staged.clear()
            self._made.clear()

    def discard(self) -> None:
        for temporary in self._staged.values():
            temporary.unlink(missing_ok=True)
        self._staged.clear()
        for folder in self._made:
            with contextlib.suppress(OSError):  # not empty: someone else's files are there
                folder.rmdir()
        self._made.clear()

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()  # after a commit there is nothing left to discard


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C during the block is raised when it ends, so it cannot split a few renames.

    Only the main thread runs signal handlers; elsewhere, or where the handler is not Python's,
    there is nothing to hold off.
    """
    if threading.current_thread() is not threading.main_thread() or not signal.getsignal(
        signal.SIGINT
    ):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)  # handled now, as it would have been
