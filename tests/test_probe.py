"""training/probe.py: the loss with a condition taken away moves exactly when the model reads that condition."""

import math

import pytest
import torch

from dimo_engine.cli.main import main as dimo
from tests.fixtures_clips import write_dataset
from training.config import load_config
from training.probe import AS_TRAINED, motion_token_spread, probe_conditions
from training.train import build_pipeline

TINY = {"preset": "tiny", "height": "32", "width": "32", "num_frames": "5", "window_stride": "2",
        "use_latent_cache": "false"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("probe-clips"), num_clips=2, num_frames=7, size=32)


def _config(dataset, **overrides):
    return load_config("tiny-cpu", {**TINY, "dataset": str(dataset), **overrides})


def _randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.05)


def test_null_motion_changes_the_loss_only_once_the_motion_branch_is_trained(dataset):
    config = _config(dataset)
    pipe = build_pipeline(config)
    fresh = probe_conditions(config, pipe, num_pairs=3, sigmas=(0.5, 0.9))
    assert set(fresh.losses) == {"whole frame", "person"}
    assert set(fresh.losses["person"]) == {AS_TRAINED, "other reference", "null motion"}
    assert all(math.isfinite(v) for region in fresh.losses.values() for losses in region.values() for v in losses.values())
    assert fresh.losses["person"][AS_TRAINED] != fresh.losses["whole frame"][AS_TRAINED]
    # A fresh DiT's motion branch is zero-initialised: it cannot read the motion, so taking it away changes nothing...
    for region in ("whole frame", "person"):
        assert all(abs(c) < 1e-6 for c in fresh.change("null motion", region).values())
    # ...while its random backbone already attends to the in-context reference frame.
    assert all(abs(c) > 1e-4 for c in fresh.change("other reference").values())
    _randomise(pipe.transformer.motion_blocks)
    trained = probe_conditions(config, pipe, num_pairs=3, sigmas=(0.5, 0.9))
    assert all(abs(c) > 1e-4 for c in trained.change("null motion", "person").values())
    assert trained.losses["whole frame"][AS_TRAINED] != fresh.losses["whole frame"][AS_TRAINED]
    assert "| person | null motion |" in trained.table()
    assert fresh.token_spread > 0.05  # a random encoder's tokens differ between driving videos


def test_motion_token_spread_is_zero_for_an_encoder_that_ignores_its_input():
    generator = torch.Generator().manual_seed(0)
    varied = torch.randn(4, 3, 2, 8, generator=generator)
    assert motion_token_spread(varied) > 0.5
    assert motion_token_spread(torch.ones(1, 3, 2, 8).expand(4, -1, -1, -1) * 1.5) == 0.0


def test_baselines_are_probed_without_their_control_maps_not_without_motion(dataset):
    config = _config(dataset, control="pose2d", motion_dropout="1.0", aux_weight="0")
    pipe = build_pipeline(config)
    fresh = probe_conditions(config, pipe, num_pairs=2, sigmas=(0.5,))
    assert set(fresh.losses["whole frame"]) == {AS_TRAINED, "other reference", "no control"}  # it never saw motion
    assert abs(fresh.change("no control")[0.5]) < 1e-6  # zero-initialised control branch
    _randomise(pipe.transformer.control_embedding)
    assert abs(probe_conditions(config, pipe, num_pairs=2, sigmas=(0.5,)).change("no control")[0.5]) > 1e-4


def test_cli_prints_the_table(dataset, tmp_path, capsys):
    config = _config(dataset)
    folder = tmp_path / "pipe"
    build_pipeline(config).save_pretrained(folder)
    args = ["probe-conditions", "--config", "tiny-cpu", "--model", str(folder), "--pairs", "2",
            "--dataset", str(dataset)] + [f"--set={k}={v}" for k, v in TINY.items()]
    assert dimo(args) == 0
    out = capsys.readouterr().out
    assert "flow loss on 2 training pairs" in out and "| whole frame | other reference |" in out
    assert "motion tokens: spread across pairs" in out
    assert dimo(["probe-conditions", "--config", "tiny-cpu", "--model", str(tmp_path / "missing")]) == 2
