"""Checkpoints: weights in safetensors, the config and training facts in a JSON file beside them.

`NAME.safetensors` + `NAME.json`. The JSON names the model kind, its config, the SHA-256 of the
weights file and what training measured; loading needs nothing else. Every way a checkpoint can be
wrong — missing, truncated, corrupt, another model's, shapes that do not match its config — raises
`CheckpointError` with the file's name, so the caller can say so in one line and carry on with the
rules.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from livekomp.files import write_atomically
from livekomp.models.groove import GrooveConfig, GroovePredictor
from livekomp.models.harmony import HarmonyConfig, HarmonyPredictor
from livekomp.models.melody import MelodyConfig, MelodyTransformer

FORMAT = 1
KINDS: dict[str, tuple[type, type]] = {
    "melody": (MelodyConfig, MelodyTransformer),
    "harmony": (HarmonyConfig, HarmonyPredictor),
    "groove": (GrooveConfig, GroovePredictor),
}
DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "checkpoints"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save(model: nn.Module, kind: str, directory: Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `directory/kind.safetensors` and `directory/kind.json`; returns the weights path."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{kind}.safetensors"
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    # Whole or not at all: a checkpoint cut off mid-write would load as garbage or not at all.
    write_atomically(
        weights, safetensors_bytes(tensors, metadata={"kind": kind, "format": str(FORMAT)})
    )
    description = {
        "kind": kind,
        "format": FORMAT,
        "config": model.config.as_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "sha256": sha256(weights),
        **(meta or {}),
    }
    write_atomically(
        directory / f"{kind}.json", (json.dumps(description, indent=2) + "\n").encode()
    )
    return weights


def read_json(path: Path, error: type[Exception], where: str) -> Any:
    """A JSON file's content; a missing or unreadable one raises `error` saying `where`."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"{where}: unreadable: {problem}") from None


def read_description(kind: str, directory: Path) -> dict[str, Any]:
    path = directory / f"{kind}.json"
    description = read_json(path, CheckpointError, str(path))
    if not isinstance(description, dict) or description.get("kind") != kind:
        raise CheckpointError(f"{path}: not a {kind} checkpoint description")
    if description.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {description.get('format')!r}, expected {FORMAT}")
    return description


def load(kind: str, directory: Path = DEFAULT_DIR, device: str | torch.device = "cpu") -> nn.Module:
    """The `kind` model from `directory`, in eval mode, on `device`."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    config_type, model_type = KINDS[kind]
    description = read_description(kind, directory)
    json_path = directory / f"{kind}.json"
    weights = directory / f"{kind}.safetensors"
    known = {f.name for f in fields(config_type)}
    raw = description.get("config")
    if not isinstance(raw, dict) or set(raw) - known:
        raise CheckpointError(f"{json_path}: config does not fit {config_type.__name__}")
    try:
        config = config_type(**raw)
    except TypeError as error:
        raise CheckpointError(f"{json_path}: bad config: {error}") from None
    if not weights.is_file():
        raise CheckpointError(f"{weights}: no such file")
    if description.get("sha256") != sha256(weights):
        raise CheckpointError(f"{weights}: corrupt (its SHA-256 differs from {json_path.name})")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights}: unreadable: {error}") from None
    model = model_type(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0:2]
        raise CheckpointError(f"{weights}: does not match its config: {' '.join(first)}") from None
    return model.to(device).eval()
