"""Style adapters: LoRA updates to the melody and groove models, made and read with peft.

An adapter is a folder `ADAPTERS/NAME/`:

    style.json   what it is: the base weights it was trained on (SHA-256 per model), rank and
                 alpha, the SHA-256 of each adapter file, the MIDI it learned from and what
                 training measured
    melody/      peft's adapter_model.safetensors + adapter_config.json (attention projections)
    groove/      the same for the groove predictor's three linear layers, when it was adapted
    CARD.md      the same facts for people

Loading checks everything `style.json` promises before a weight is used — the files exist and
hash right, the base is the one loaded now, rank and alpha agree between the description, peft's
config and the tensors, every tensor is finite and fits the model — and refuses with an
`AdapterError` that names the adapter. The base models carry on whatever an adapter does.

Live, each loaded style is merged into its own copy of the base weights (`merged`): the melody
model is 3.8 MB, so a copy per style costs little, a bar in any style costs what a base bar
costs, switching styles is picking another copy, and peft runs only while a style loads. The
unmerged model (`load_adapter`) is what training and the merge parity test use.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from livekomp.models import checkpoint
from livekomp.models.checkpoint import read_json, sha256
from livekomp.models.runtime import export_onnx, onnx_path
from livekomp.music.phrase import BASE_STYLE, parse_style

FORMAT = 1
STYLE_FILE = "style.json"
CARD_FILE = "CARD.md"
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
# The models an adapter may bend, and the modules it may touch in each: the melody model's
# attention projections, and all three linear layers of the groove predictor (an MLP).
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "melody": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "groove": ("net.0", "net.3", "net.5"),
}
KINDS = tuple(TARGET_MODULES)


class AdapterError(Exception):
    """An adapter that cannot be used; the message names it and says what is wrong."""


def check_name(name: str) -> str:
    """An adapter's name: a style name (`phrase.parse_style`) other than `base`."""
    try:
        style = parse_style(name)
    except ValueError as error:
        raise AdapterError(str(error)) from None
    if style == BASE_STYLE:
        raise AdapterError(f"{BASE_STYLE!r} means the base models; choose another name")
    return style


def lora_config(
    kind: str, rank: int, alpha: float, dropout: float = 0.0, modules: list[str] | None = None
):
    """peft's config for a `kind` adapter on `modules` (default: all it may touch)."""
    from peft import LoraConfig  # imported late: a run without styles never pays for peft

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=modules or list(TARGET_MODULES[kind]),
        bias="none",
    )


def attach(base: nn.Module, kind: str, rank: int, alpha: float, dropout: float = 0.0):
    """A peft model around a copy of `base` with a fresh adapter; only the adapter trains."""
    from peft import get_peft_model

    return get_peft_model(copy.deepcopy(base), lora_config(kind, rank, alpha, dropout))


def inner(peft_model) -> nn.Module:
    """The adapted model itself (its LoRA layers injected), for calling its own methods."""
    return peft_model.base_model.model


def trainable_parameters(peft_model) -> int:
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def save_adapter(peft_model, folder: Path) -> str:
    """Write peft's adapter files into `folder`; returns the weights' SHA-256."""
    peft_model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # peft's blank model card; CARD.md is ours
    return sha256(folder / WEIGHTS_FILE)


@dataclass(frozen=True)
class StyleInfo:
    """A style adapter's description, read and checked from its `style.json`."""

    name: str
    folder: Path
    description: dict[str, Any]

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.description["targets"])

    @property
    def rank(self) -> int:
        return int(self.description["rank"])

    @property
    def alpha(self) -> float:
        return float(self.description["alpha"])

    def base_sha(self, kind: str) -> str:
        return str(self.description["base"][kind])

    def file_sha(self, kind: str) -> str:
        return str(self.description["files"][kind])


def read_style(name: str, adapters_dir: Path) -> StyleInfo:
    """The description of style `name`, from `adapters_dir/NAME/style.json`."""
    try:
        folder = adapters_dir / check_name(name)
    except AdapterError as error:
        raise AdapterError(f"style {name!r}: {error}") from None
    path = folder / STYLE_FILE
    where = f"style {name!r} ({path})"
    if not folder.is_dir():
        raise AdapterError(f"style {name!r}: no adapter folder {folder}")
    description = read_json(path, AdapterError, where)
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise AdapterError(f"{where}: not a livekomp style description (format {FORMAT})")
    targets = description.get("targets")
    if not isinstance(targets, list) or not targets or set(targets) - set(KINDS):
        raise AdapterError(f"{where}: targets must be some of {', '.join(KINDS)}")
    for key, kind in (("rank", int), ("alpha", int | float)):
        value = description.get(key)
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            raise AdapterError(f"{where}: {key} must be a positive number, got {value!r}")
    for key in ("base", "files"):
        table = description.get(key)
        if not isinstance(table, dict) or any(not isinstance(table.get(k), str) for k in targets):
            raise AdapterError(f"{where}: {key} must give a SHA-256 for each target")
    return StyleInfo(name, folder, description)


def list_styles(adapters_dir: Path) -> list[StyleInfo | tuple[str, str]]:
    """Every adapter folder under `adapters_dir`: its description, or (name, what is wrong)."""
    if not adapters_dir.is_dir():
        return []
    found: list[StyleInfo | tuple[str, str]] = []
    for folder in sorted(p for p in adapters_dir.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            continue  # a fine-tune still being written
        try:
            found.append(read_style(folder.name, adapters_dir))
        except AdapterError as error:
            found.append((folder.name, str(error)))
    return found


def _adapter_config(info: StyleInfo, kind: str) -> dict[str, Any]:
    path = info.folder / kind / CONFIG_FILE
    where = f"style {info.name!r}: {path}"
    config = read_json(path, AdapterError, where)
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise AdapterError(f"{where}: not a peft LoRA adapter config")
    if config.get("r") != info.rank or config.get("lora_alpha") != info.alpha:
        raise AdapterError(
            f"{where}: rank {config.get('r')!r} / alpha {config.get('lora_alpha')!r} differ "
            f"from style.json's rank {info.rank} / alpha {info.alpha:g}"
        )
    modules = config.get("target_modules")
    if not isinstance(modules, list) or not modules or set(modules) - set(TARGET_MODULES[kind]):
        raise AdapterError(
            f"{where}: targets {modules!r}; a {kind} adapter may target only "
            f"{', '.join(TARGET_MODULES[kind])}"
        )
    return config


def _read_tensors(info: StyleInfo, kind: str, base_sha: str) -> dict[str, torch.Tensor]:
    """The adapter's tensors, once its file, hash and base have been checked."""
    weights = info.folder / kind / WEIGHTS_FILE
    where = f"style {info.name!r}: {weights}"
    if kind not in info.targets:
        raise AdapterError(f"style {info.name!r} has no {kind} adapter")
    if not weights.is_file():
        raise AdapterError(f"{where}: no such file")
    if sha256(weights) != info.file_sha(kind):
        raise AdapterError(f"{where}: corrupt (its SHA-256 differs from style.json)")
    if info.base_sha(kind) != base_sha:
        raise AdapterError(
            f"style {info.name!r} was trained on other {kind} weights (base "
            f"{info.base_sha(kind)[:12]}…, loaded {base_sha[:12]}…): fine-tune it again on these, "
            "or run with --checkpoints pointing at the base it was made for"
        )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise AdapterError(f"{where}: unreadable: {error}") from None
    for key, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise AdapterError(f"{where}: {key} holds values that are not finite")
    return tensors


def _check_fits(
    info: StyleInfo, kind: str, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    where = f"style {info.name!r} ({kind})"
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        first = (missing or unexpected)[0]
        word = "lacks" if missing else "has a tensor this model does not:"
        raise AdapterError(
            f"{where} does not fit this {kind} model (it was made for a model of another "
            f"shape): it {word} {first}"
        )
    for key, tensor in tensors.items():
        want = tuple(expected[key].shape)
        if tuple(tensor.shape) == want:
            continue
        rank_axis = 0 if "lora_A" in key else 1
        if tensor.ndim == 2 and tensor.shape[rank_axis] != info.rank:
            raise AdapterError(
                f"{where}: {key} has rank {tensor.shape[rank_axis]}, its config says {info.rank}"
            )
        raise AdapterError(
            f"{where}: {key} is {tuple(tensor.shape)}, this model needs {want} "
            "(it was made for a model of another size)"
        )


def load_adapter(info: StyleInfo, kind: str, base: nn.Module, base_sha: str):
    """A peft model: a copy of `base` with this style's adapter, unmerged, in eval mode."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    config = _adapter_config(info, kind)
    tensors = _read_tensors(info, kind, base_sha)
    lora = lora_config(kind, info.rank, info.alpha, modules=list(config["target_modules"]))
    model = get_peft_model(copy.deepcopy(base), lora)
    _check_fits(info, kind, tensors, get_peft_model_state_dict(model))
    set_peft_model_state_dict(model, tensors)
    return model.eval()


def merged(info: StyleInfo, kind: str, base: nn.Module, base_sha: str) -> nn.Module:
    """A copy of `base` with this style's adapter merged into its weights, in eval mode."""
    model = load_adapter(info, kind, base, base_sha).merge_and_unload()
    for name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():
            raise AdapterError(f"style {info.name!r}: merging gave non-finite {kind} {name}")
    return model.eval()


def merge_style(info: StyleInfo, checkpoints_dir: Path, out: Path) -> dict[str, Path]:
    """Write the base checkpoints with this style merged in to `out`, loadable as the base ones
    are (`--checkpoints OUT`), and export the merged melody trunk to ONNX beside them when the
    onnx package is installed. Returns what was written, by kind ("onnx" included if made)."""
    written: dict[str, Path] = {}
    for kind in checkpoint.KINDS:
        description = checkpoint.read_description(kind, checkpoints_dir)
        if kind not in info.targets:
            out.mkdir(parents=True, exist_ok=True)
            for suffix in (".safetensors", ".json"):
                shutil.copyfile(checkpoints_dir / f"{kind}{suffix}", out / f"{kind}{suffix}")
            written[kind] = out / f"{kind}.safetensors"
            continue
        base = checkpoint.load(kind, checkpoints_dir)
        model = merged(info, kind, base, description["sha256"])
        meta = {
            key: value
            for key, value in description.items()
            if key not in ("kind", "format", "config", "parameters", "sha256")
        }
        meta["merged_style"] = {
            "name": info.name,
            "adapter_sha256": info.file_sha(kind),
            "base_sha256": description["sha256"],
            "rank": info.rank,
            "alpha": info.alpha,
        }
        written[kind] = checkpoint.save(model, kind, out, meta)
    if "melody" in info.targets:
        try:
            import onnx  # noqa: F401  (the exporter needs it)
        except ImportError:
            return written
        melody = checkpoint.load("melody", out)
        written["onnx"] = export_onnx(melody, onnx_path(out))
    return written
