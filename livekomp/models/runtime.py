"""Where the melody trunk runs: torch (CUDA, MPS or CPU, optionally int8) or onnxruntime.

A runtime takes note steps and a key/value cache and returns hidden states and the grown cache;
the three small output heads run in NumPy (`Heads`) whichever runtime computes the trunk, and so
does sampling, so both runtimes draw the same notes from the same numbers. The cache is opaque to
callers: torch tensors for torch, NumPy arrays for onnxruntime.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import torch

from livekomp.models.checkpoint import read_description
from livekomp.models.melody import MelodyTransformer

log = logging.getLogger("livekomp.models")

DEVICES = ("auto", "cpu", "cuda", "mps")
RUNTIMES = ("torch", "onnx")
ONNX_INSTALL = "pip install -c constraints.txt onnx onnxruntime"


class RuntimeUnavailable(Exception):
    """A runtime that cannot start here (no such device, or a package it needs)."""


class RuntimeMissing(RuntimeUnavailable):
    """The runtime asked for needs a package that is not installed: the user installs it, so
    the command stops rather than play the rules."""


def require_onnx(package: str) -> ModuleType:
    """`package` (onnx exports the trunk, onnxruntime runs it), or RuntimeMissing naming it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise RuntimeMissing(
            f"--runtime onnx needs the {package} package, which is not installed: {ONNX_INSTALL}"
        ) from None


def pick_device(name: str = "auto") -> str:
    """CUDA, then MPS, then CPU for "auto"; a named device must be available."""
    if name not in DEVICES:
        raise RuntimeUnavailable(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise RuntimeUnavailable(f"device {name!r} is not available on this machine")
    return name


class Trunk(Protocol):
    name: str

    def empty(self) -> Any: ...

    def __call__(
        self, steps: np.ndarray, mood: np.ndarray, metre: int, cache: Any
    ) -> tuple[np.ndarray, Any]: ...


class TorchTrunk:
    """The trunk in torch, on a device, optionally with dynamic int8 linear layers (CPU only)."""

    def __init__(self, model: MelodyTransformer, device: str = "cpu", quantize: bool = False):
        if quantize:
            if device != "cpu":
                raise RuntimeUnavailable("int8 quantization runs on the CPU only")
            with warnings.catch_warnings():
                # torch 2.13 marks eager dynamic quantization deprecated (for torchao); it still
                # is the one int8 path that needs no extra package.
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.name = f"torch-{device}" + ("-int8" if quantize else "")

    def empty(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.empty_cache(1, self.device)

    @torch.inference_mode()
    def __call__(
        self, steps: np.ndarray, mood: np.ndarray, metre: int, cache: tuple[torch.Tensor, ...]
    ) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
        hidden, k, v = self.model.trunk(
            torch.from_numpy(steps).to(self.device),
            torch.from_numpy(mood).to(self.device),
            torch.tensor([metre], device=self.device),
            *cache,
        )
        return hidden[0].float().cpu().numpy(), (k, v)


def export_onnx(model: MelodyTransformer, path: Path) -> Path:
    """Write the trunk, with its cache inputs and outputs, as an ONNX graph (whole or not at
    all; RuntimeMissing, and no folder made, without the onnx package)."""
    require_onnx("onnx")
    c = model.config
    model = model.cpu().eval()
    steps = torch.zeros(1, 3, 3, dtype=torch.long)
    mood = torch.zeros(1, 3, 2)
    metre = torch.zeros(1, dtype=torch.long)
    past = torch.zeros(c.n_layers, 1, c.n_heads, 2, c.d_model // c.n_heads)

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, steps, mood, metre, past_k, past_v):
            return self.model.trunk(steps, mood, metre, past_k, past_v)

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial")
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that needs no onnxscript; torch 2.13 warns that it
        # is the legacy path.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The trace takes the masked branch (3 new steps), which is right for one step too.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            _export(Wrapper(), (steps, mood, metre, past, past), temporary)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    temporary.replace(path)
    return path


def _export(module: torch.nn.Module, example: tuple, path: Path) -> None:
    torch.onnx.export(
        module,
        example,
        str(path),
        dynamo=False,
        input_names=["steps", "mood", "metre", "past_k", "past_v"],
        output_names=["hidden", "keys", "values"],
        dynamic_axes={
            "steps": {1: "new"},
            "mood": {1: "new"},
            "past_k": {3: "past"},
            "past_v": {3: "past"},
            "hidden": {1: "new"},
            "keys": {3: "total"},
            "values": {3: "total"},
        },
        opset_version=17,
    )


def onnx_path(directory: Path) -> Path:
    """Where the melody trunk's ONNX export lives: beside the checkpoint when that folder is
    writable, else in the user's cache; named by the weights' hash, so new weights export anew."""
    sha = read_description("melody", directory)["sha256"][:16]
    return export_path(directory, f"melody-{sha}.onnx")


def export_path(directory: Path, name: str) -> Path:
    """`directory/onnx/name` when that folder is writable, else the user's cache.

    A folder made to find out is removed again: the export makes it when it writes there, so a
    run that never exports (onnx missing) leaves none behind.
    """
    beside = directory / "onnx"
    made = not beside.exists()
    try:
        beside.mkdir(exist_ok=True)
        probe = beside / ".writable"
        probe.touch()
        probe.unlink()
        return beside / name
    except OSError:
        return Path.home() / ".cache" / "livekomp" / "onnx" / name
    finally:
        if made:
            with contextlib.suppress(OSError):
                beside.rmdir()


class OnnxTrunk:
    """The trunk exported to ONNX and run by onnxruntime on one CPU thread."""

    def __init__(self, model: MelodyTransformer, path: Path, threads: int = 1) -> None:
        onnxruntime = require_onnx("onnxruntime")
        if not path.is_file():
            export_onnx(model, path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        c = model.config
        self._empty_shape = (c.n_layers, 1, c.n_heads, 0, c.d_model // c.n_heads)
        self.name = "onnxruntime-cpu"

    def empty(self) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros(self._empty_shape, dtype=np.float32)
        return empty, empty

    def __call__(
        self, steps: np.ndarray, mood: np.ndarray, metre: int, cache: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        hidden, k, v = self.session.run(
            None,
            {
                "steps": steps,
                "mood": mood,
                "metre": np.array([metre], dtype=np.int64),
                "past_k": cache[0],
                "past_v": cache[1],
            },
        )
        return hidden[0], (k, v)


_GELU_SCALE = math.sqrt(2.0 / math.pi)


def _gelu(x: np.ndarray) -> np.ndarray:
    """The tanh form of GELU, as `melody.gelu`."""
    return 0.5 * x * (1.0 + np.tanh(_GELU_SCALE * (x + 0.044715 * x**3)))


class Heads:
    """The melody model's output heads in NumPy: small enough that a matrix-vector product each
    is cheaper than a call into any runtime."""

    def __init__(self, model: MelodyTransformer) -> None:
        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy()

        self.position_w = array(model.position_head.weight)
        self.position_b = array(model.position_head.bias)
        self.given_position = array(model.given_position.weight)
        self.pitch_w = array(model.pitch_head.weight)
        self.pitch_b = array(model.pitch_head.bias)
        self.given_pitch = array(model.given_pitch.weight)
        self.duration_w = array(model.duration_head.weight)
        self.duration_b = array(model.duration_head.bias)

    def position(self, hidden: np.ndarray) -> np.ndarray:
        return self.position_w @ hidden + self.position_b

    def pitch(self, hidden: np.ndarray, position: int) -> np.ndarray:
        return self.pitch_w @ _gelu(hidden + self.given_position[position]) + self.pitch_b

    def duration(self, hidden: np.ndarray, position: int, pitch: int) -> np.ndarray:
        with_pitch = hidden + self.given_position[position] + self.given_pitch[pitch]
        return self.duration_w @ _gelu(with_pitch) + self.duration_b
