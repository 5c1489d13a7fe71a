"""Checkpoints round-trip, and every way one can be broken is refused with the file's name."""

import json

import pytest
import torch

from livekomp import files
from livekomp.models import checkpoint
from livekomp.models.checkpoint import CheckpointError
from livekomp.models.melody import MelodyTransformer
from tests.models.conftest import TINY_MELODY, save_tiny, tiny_models
from tests.models.test_melody import random_steps


def test_a_saved_model_loads_back_with_the_same_outputs(tmp_path):
    save_tiny(tmp_path)
    original, _, _ = tiny_models()
    loaded = checkpoint.load("melody", tmp_path)
    assert loaded.config == TINY_MELODY
    steps, mood, metre = random_steps(9), torch.zeros(1, 9, 2), torch.tensor([3])
    with torch.no_grad():
        a, _, _ = original.trunk(steps, mood, metre, *original.empty_cache())
        b, _, _ = loaded.trunk(steps, mood, metre, *loaded.empty_cache())
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    description = json.loads((tmp_path / "melody.json").read_text())
    assert description["parameters"] == original.parameter_count()
    for kind in ("harmony", "groove"):
        assert not checkpoint.load(kind, tmp_path).training


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"melody\.json: no such file"):
        checkpoint.load("melody", tmp_path)


def test_a_corrupt_weights_file_is_refused(tmp_path):
    save_tiny(tmp_path)
    weights = tmp_path / "melody.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"melody\.safetensors: corrupt"):
        checkpoint.load("melody", tmp_path)


def test_a_truncated_file_with_a_matching_hash_is_still_refused(tmp_path):
    save_tiny(tmp_path)
    weights = tmp_path / "groove.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    description = json.loads((tmp_path / "groove.json").read_text())
    description["sha256"] = checkpoint.sha256(weights)
    (tmp_path / "groove.json").write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match=r"groove\.safetensors: unreadable"):
        checkpoint.load("groove", tmp_path)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    save_tiny(tmp_path)
    description = json.loads((tmp_path / "melody.json").read_text())
    description["config"]["d_model"] = 64
    (tmp_path / "melody.json").write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match="does not match its config"):
        checkpoint.load("melody", tmp_path)


def test_another_models_description_is_refused(tmp_path):
    save_tiny(tmp_path)
    (tmp_path / "melody.json").write_text((tmp_path / "groove.json").read_text())
    with pytest.raises(CheckpointError, match="not a melody checkpoint"):
        checkpoint.load("melody", tmp_path)
    (tmp_path / "harmony.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"harmony\.json: unreadable"):
        checkpoint.load("harmony", tmp_path)


def test_a_save_cut_off_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    """Saving writes each file under a temporary name, then renames it: a save that fails
    midway (the disk full, Ctrl-C) leaves the checkpoint that was there, loadable, and nothing
    half-written beside it."""
    save_tiny(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = MelodyTransformer(TINY_MELODY)  # other weights: a save that landed would show

    def cut_off(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", cut_off)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(other, "melody", tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert checkpoint.load("melody", tmp_path).config == TINY_MELODY
