"""Reading TOML files: one way to fail for every file livekomp reads (settings, setlists,
mappings, lines, style corpora). Imports nothing of livekomp, so every layer can use it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_toml(
    path: Path, error: type[ValueError], what: str, shown: str | None = None
) -> dict[str, Any]:
    """Read a TOML file; a missing, unreadable or malformed file, or one that is not UTF-8 text
    (random bytes, TOML saved as UTF-16), raises `error` naming it.

    Every file livekomp reads (settings, setlists, mappings) fails the same way, before
    anything plays.
    """
    shown = shown or str(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"{shown}: no such {what} file") from None
    except OSError as exc:
        raise error(f"{shown}: cannot read {what} file: {exc}") from None
    except UnicodeDecodeError:
        raise error(f"{shown}: not UTF-8 text (is it a TOML file?)") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{shown}: not valid TOML: {exc}") from None
