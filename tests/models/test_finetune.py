"""Fine-tuning on a small folder: the warning that names its size, the default length and where
it is stated, the pull toward the base that keeps a few tunes from collapsing the style, and
early stopping on a held-out set of one window.

Each fine-tune here runs on one CPU thread: on a loaded two-core machine two threads made a step
ten times slower, and the figures do not depend on it.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import pytest
import torch

from livekomp import cli
from livekomp.models import checkpoint, data, lora, proxy
from livekomp.models.finetune import (
    BASE_PRIOR_NOTES,
    FULL_EPOCHS,
    FULL_STEPS,
    SMALL_EPOCHS,
    SMALL_FILES,
    SMALL_NOTES,
    FinetuneOptions,
    Plan,
    categorical_kl,
    default_epochs,
    finetune,
    kl_weight,
    split_records,
)
from livekomp.models.midi_import import read_midi_folder
from livekomp.models.scores import melody_scores
from tools import style_check
from tools.style_corpus import TONIC, write_corpus

BASE = checkpoint.DEFAULT_DIR
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_small_folder_is_warned_about_by_its_size(tmp_path, caplog):
    corpus = write_corpus(tmp_path / "midi", songs=3)
    options = FinetuneOptions(midi=corpus, name="tiny", target="melody", epochs=1, device="cpu")
    with caplog.at_level(logging.WARNING, logger="livekomp"):
        info = finetune(options, tmp_path / "adapters", BASE, progress=False, say=lambda _: None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    warning = warnings[0]
    # 3 tunes of 16 bars, 8 notes a bar; the thresholds it falls short of; what is done about it.
    assert "small folder: 3 file(s), 384 melody notes in 48 bars" in warning
    assert f"at least {SMALL_FILES} files and {SMALL_NOTES:,} melody notes" in warning
    assert "--epochs 1 as given" in warning
    assert "KL weight 0.98" in warning  # 250 prior notes over the 256 notes of two training tunes
    assert info.description["data"]["small_folder"] == warning
    card = (info.folder / lora.CARD_FILE).read_text()
    assert "## Warning: a small folder" in card and warning in card


def test_what_counts_as_small_and_how_long_a_default_fine_tune_is():
    def sized(files: int, notes: int, **options) -> Plan:
        return Plan(files, notes, notes // 8, notes, FinetuneOptions(Path("."), "x", **options))

    assert sized(SMALL_FILES, SMALL_NOTES).small is False
    assert sized(SMALL_FILES - 1, 10 * SMALL_NOTES).small is True
    assert sized(10 * SMALL_FILES, SMALL_NOTES - 1).small is True
    assert sized(20, 5000).warning() is None
    assert f"{SMALL_EPOCHS} passes instead of {FULL_EPOCHS}" in sized(3, 384).warning()
    assert "NOT held to the base" in sized(3, 384, base_prior_notes=0).warning()
    # A dozen songs make a batch or three an epoch: FULL_EPOCHS passes; a large folder stops at
    # about FULL_STEPS steps; a small one trains SMALL_EPOCHS passes; --epochs wins.
    assert default_epochs(False, 3) == FULL_EPOCHS
    assert default_epochs(False, 7) * 7 == pytest.approx(FULL_STEPS, abs=7)
    assert default_epochs(False, 400) == 1
    assert default_epochs(True, 1) == SMALL_EPOCHS
    assert sized(3, 384).epochs(1) == SMALL_EPOCHS
    assert sized(3, 384, epochs=5).epochs(1) == 5
    # The pull: the base's pseudo-notes over the folder's.
    assert kl_weight(BASE_PRIOR_NOTES, 256) == pytest.approx(BASE_PRIOR_NOTES / 256)
    assert sized(3, 384, base_prior_notes=0).kl_weight == 0
    assert sized(3, 384).kl_weight > 10 * sized(100, 12_800).kl_weight


def test_help_and_readme_say_what_the_code_does(capsys):
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    readme = " ".join(README.read_text().split())
    for text in (help_text, readme):
        assert f"default {FULL_EPOCHS}" in text
        assert f"about {FULL_STEPS} steps" in text
        assert f"{SMALL_EPOCHS} for a small folder" in text
        assert f"under {SMALL_FILES} files or {SMALL_NOTES:,} melody notes" in text
        assert f"default {BASE_PRIOR_NOTES:g}" in text


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_a_bad_base_prior_is_one_line_and_writes_nothing(tmp_path, capsys, value):
    corpus = write_corpus(tmp_path / "midi", songs=1)
    adapters = tmp_path / "adapters"
    argv = ["finetune", "--midi", str(corpus), "--name", "x", "--adapters", str(adapters)]
    assert cli.main([*argv, "--base-prior", value]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"livekomp: error: --base-prior must be 0 or more, got {value}"]
    assert not adapters.exists()


def test_the_pull_is_kl_from_the_base_to_the_style():
    base = torch.log(torch.tensor([[0.5, 0.5]]))
    styled = torch.log(torch.tensor([[0.9, 0.1]]))
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # KL(base ‖ styled)
    assert categorical_kl(base, styled).item() == pytest.approx(expected, rel=1e-5)
    assert categorical_kl(styled, styled).item() == pytest.approx(0.0, abs=1e-7)


def collapse_folder(root: Path) -> Path:
    """Three takes, two of them one tune: the held-out take is a copy of a training one, so the
    held-out loss keeps falling as the model learns the tunes by heart, and early stopping cannot
    stop it. (`copy.mid` is the file the hash holds out.)"""
    corpus = write_corpus(root / "corpus", songs=2)
    shutil.copyfile(corpus / "tune00.mid", corpus / "copy.mid")
    return corpus


def calm_entropy(model: torch.nn.Module) -> float:
    """Pitch entropy of a melody model's own voice (no composer guards: `model_melody`) in two
    calm moods, far from this folder's (happy and lively, by the proxy labeller): where an
    overfit style first falls into saying one thing over and over. 512 notes."""
    calm = [(0.8, -0.8), (0.0, -0.8)]
    melodies = [style_check.model_melody(model, calm, TONIC, seed, 64) for seed in (1, 2, 3, 4)]
    return style_check.shape(melodies).pitch_entropy_bits


def test_the_pull_to_the_base_keeps_a_three_file_style_from_collapsing(tmp_path):
    corpus = collapse_folder(tmp_path)
    # A high learning rate stands in for a long run, so the test takes seconds.
    options = FinetuneOptions(
        midi=corpus, name="takes", target="melody", epochs=60, learning_rate=3e-2, device="cpu"
    )
    info = finetune(options, tmp_path / "adapters", BASE, progress=False, say=lambda _: None)
    facts = info.description["training"]["melody"]
    assert facts["best_epoch"] == 60, "early stopping did not stop it: the pull alone must"
    assert facts["kl_weight"] == pytest.approx(BASE_PRIOR_NOTES / 256, abs=1e-5)
    base = checkpoint.load("melody", BASE)
    styled = lora.merged(
        info, "melody", base, checkpoint.read_description("melody", BASE)["sha256"]
    )
    # Measured: the base 3.5 bits; the style 4.4, and without the pull (base_prior_notes=0)
    # 2.7, with two pitches taking 59 % of the notes (the base's two: 40 %).
    assert calm_entropy(styled) >= calm_entropy(base)


def test_early_stopping_works_with_a_held_out_set_of_one_window(tmp_path):
    corpus = write_corpus(tmp_path / "midi", songs=1)  # one tune: its last 4 bars are held out
    options = FinetuneOptions(midi=corpus, name="one", target="melody", epochs=8, device="cpu")
    info = finetune(options, tmp_path / "adapters", BASE, progress=False, say=lambda _: None)
    facts = info.description["training"]["melody"]
    assert facts["examples"]["held_out"] == 1
    losses = [row["held_out_loss"] for row in facts["history"]]
    base_loss = facts["held_out"]["base"]["loss"]
    best = min(range(len(losses)), key=losses.__getitem__)
    if losses[best] < base_loss:
        assert facts["best_epoch"] == best + 1
        assert facts["held_out"]["adapted"]["loss"] == pytest.approx(losses[best], abs=1e-5)
    else:
        assert facts["best_epoch"] == 0
    # The adapter saved is the one that scored so: measure it again on the held-out window.
    records, _ = read_midi_folder(corpus)
    _, held = split_records(records, options.holdout)
    assert [r["id"] for r in held] == info.description["data"]["held_out"]
    stats = proxy.ProxyStats(**checkpoint.read_description("melody", BASE)["proxy_stats"])
    examples = data.melody_examples(held, stats, 64, stride=16)
    base = checkpoint.load("melody", BASE)
    sha = checkpoint.read_description("melody", BASE)["sha256"]
    adapted = lora.inner(lora.load_adapter(info, "melody", base, sha))
    measured = sum(f["nll"] for f in melody_scores(adapted, examples).values())
    assert measured == pytest.approx(facts["held_out"]["adapted"]["loss"], rel=1e-4)
