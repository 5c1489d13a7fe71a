"""Writing files whole or not at all: to a temporary name beside the target, then a rename.

A reader (a tool waiting on a ready file, a DAW importing a recording) never sees half a file,
and an interrupted write leaves the old file, or none.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_atomically(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # the temporary file must not stay behind
        raise


def write_json_atomically(path: str | Path, value: object) -> None:
    write_atomically(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())
