"""Runtimes: onnxruntime and int8 torch agree with plain torch; devices are chosen sensibly."""

import numpy as np
import pytest
import torch

from livekomp.models.runtime import OnnxTrunk, RuntimeUnavailable, TorchTrunk, pick_device
from tests.models.conftest import tiny_models
from tests.models.test_melody import random_steps


def run_in_steps(trunk, steps, mood, metre):
    """Prefill five steps, then one at a time with the cache: the generation pattern."""
    hidden, cache = trunk(steps[:, :5], mood[:, :5], metre, trunk.empty())
    rows = [hidden]
    for t in range(5, steps.shape[1]):
        hidden, cache = trunk(steps[:, t : t + 1], mood[:, t : t + 1], metre, cache)
        rows.append(hidden)
    return np.concatenate(rows)


def test_onnxruntime_matches_torch_with_the_cache(tmp_path):
    model, _, _ = tiny_models()
    steps = random_steps(16).numpy()
    mood = np.random.default_rng(0).random((1, 16, 2), dtype=np.float32) * 2 - 1
    reference = run_in_steps(TorchTrunk(model), steps, mood, 3)
    onnx = OnnxTrunk(model, tmp_path / "melody.onnx")
    assert (tmp_path / "melody.onnx").stat().st_size > 0
    np.testing.assert_allclose(run_in_steps(onnx, steps, mood, 3), reference, atol=1e-4, rtol=1e-4)
    assert np.abs(reference).max() > 0.1


def test_int8_stays_close_to_float():
    model, _, _ = tiny_models()
    steps = random_steps(12).numpy()
    mood = np.zeros((1, 12, 2), dtype=np.float32)
    exact = run_in_steps(TorchTrunk(model), steps, mood, 3)
    quantized = TorchTrunk(tiny_models()[0], quantize=True)
    assert quantized.name.endswith("int8")
    approx = run_in_steps(quantized, steps, mood, 3)
    assert not np.allclose(approx, exact, atol=1e-7)  # it really is another computation
    assert np.corrcoef(approx.ravel(), exact.ravel())[0, 1] > 0.98


def test_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert pick_device("auto") == expected
    assert pick_device("cpu") == "cpu"
    with pytest.raises(RuntimeUnavailable, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeUnavailable, match="not available"):
            pick_device("cuda")
