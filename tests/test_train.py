"""The training loop end to end on tiny synthetic clips: resume, cache, annealing, loss going down, 2 processes, export."""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from dimo_engine.cli.main import main as dimo
from dimo_engine.errors import InputError
from tests.fixtures_clips import write_dataset
from training.config import load_config
from training.train import train

TINY = {"preset": "tiny", "height": "32", "width": "32", "num_frames": "5", "window_stride": "2",
        "locator_steps": "0", "checkpoint_every": "0", "export": "false", "tensorboard": "false"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("train-clips"), num_clips=2, num_frames=7, size=32)


def _config(dataset, output_dir, **overrides):
    return load_config("tiny-cpu", {**TINY, "dataset": str(dataset), "output_dir": str(output_dir), **overrides})


def _metrics(output_dir):
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_config_files_and_overrides():
    config = load_config("tiny-cpu", {"max_steps": "7", "use-latent-cache": "false", "learning_rate": "1e-3"})
    assert (config.max_steps, config.use_latent_cache, config.learning_rate) == (7, False, 1e-3)
    assert load_config("wan-1.3b").trainable == "new+blocks"
    with pytest.raises(InputError, match="'max_stepz' is not a training setting"):
        load_config("tiny-cpu", {"max_stepz": "3"})
    with pytest.raises(InputError, match="4k\\+1"):
        load_config("tiny-cpu", {"num_frames": "6"})
    with pytest.raises(InputError, match="not a int"):
        load_config("tiny-cpu", {"max_steps": "many"})
    assert dimo(["train", "--config", "no-such-config"]) == 2


@pytest.mark.slow
def test_resume_gives_the_same_loss_curve(dataset, tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train(_config(dataset, full, max_steps="6", checkpoint_every="3", use_ema="true"))
    train(_config(dataset, resumed, max_steps="3", checkpoint_every="3", use_ema="true"))  # "interrupted" at 3
    summary = train(_config(dataset, resumed, max_steps="6", checkpoint_every="3", use_ema="true"), resume=True)
    assert summary["step"] == 6
    curve = lambda d: [(m["step"], m["loss"], m["flow_loss"], m["aux_loss"]) for m in _metrics(d)]  # noqa: E731
    assert curve(full) == curve(resumed) and len(curve(full)) == 6
    final = lambda d: load_file(str(d / "checkpoints" / "step_0000006" / "model.safetensors"))  # noqa: E731
    a, b = final(full), final(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_latent_cache_gives_the_same_losses(dataset, tmp_path):
    cached_root = tmp_path / "cached"
    shutil.copytree(dataset, cached_root)
    args = ["--config", "tiny-cpu", "--dataset", str(cached_root)] + [f"--set={k}={v}" for k, v in TINY.items()]
    assert dimo(["cache-latents", *args]) == 0
    assert list(cached_root.glob("train/clip_*/views/*/latents_5f_32x32.safetensors"))
    train(_config(cached_root, tmp_path / "with", max_steps="3"))
    train(_config(cached_root, tmp_path / "without", max_steps="3", use_latent_cache="false"))
    with_cache, without = _metrics(tmp_path / "with"), _metrics(tmp_path / "without")
    assert [m["loss"] for m in with_cache] == pytest.approx([m["loss"] for m in without], rel=1e-5)


@pytest.mark.slow
def test_person_weighted_loss_reweighs_the_same_step(dataset, tmp_path):
    train(_config(dataset, tmp_path / "plain", max_steps="2", use_latent_cache="false"))
    train(_config(dataset, tmp_path / "person", max_steps="2", use_latent_cache="false", person_loss_weight="20"))
    plain, person = _metrics(tmp_path / "plain"), _metrics(tmp_path / "person")
    assert all(math.isfinite(m["flow_loss"]) for m in person)
    # Step 1: the same weights, sample and noise, so only the weighting of the cells differs.
    assert person[0]["flow_loss"] != pytest.approx(plain[0]["flow_loss"], rel=1e-4)


@pytest.mark.slow
def test_geometric_heads_stop_at_S_and_loss_decreases(dataset, tmp_path):
    output = tmp_path / "run"
    summary = train(_config(dataset, output, max_steps="30", aux_hold_steps="5", aux_end_step="20",
                            checkpoint_every="20", learning_rate="1e-3", use_ema="false", export="true",
                            locator_steps="10"))
    metrics = [m for m in _metrics(output) if "aux_weight" in m]  # the last line is the locator's
    weights = [m["aux_weight"] for m in metrics]
    assert weights[:5] == [1.0] * 5 and all(w == 0.0 for w in weights[20:]) and 0 < weights[12] < 1
    assert all(m["aux_loss"] == 0.0 for m in metrics[20:])
    # after S the pose heads got no gradient: their weights at step 20 and at step 30 are identical
    at_20 = load_file(str(output / "checkpoints" / "step_0000020" / "model.safetensors"))
    at_30 = load_file(str(output / "checkpoints" / "step_0000030" / "model.safetensors"))
    heads = [k for k in at_20 if ".pose_head." in k]
    assert heads and all(torch.equal(at_20[k], at_30[k]) for k in heads)
    assert not torch.equal(at_20["transformer.proj_out.weight"], at_30["transformer.proj_out.weight"])
    early = sum(m["loss"] for m in metrics[:5]) / 5
    late_flow = sum(m["flow_loss"] for m in metrics[-5:]) / 5
    assert sum(m["flow_loss"] for m in metrics[:5]) / 5 > late_flow and early > late_flow
    # the export is a loadable pipeline of the trained size, with a trained keypoint locator
    from dimo_engine.pipelines import load_pipeline

    pipe = load_pipeline(summary["pipeline"], "cpu")
    assert (pipe.config.num_frames, pipe.config.height) == (5, 32)
    assert pipe.keypoint_locator.config.trained
    assert summary["locator_loss_first_last"][1] < summary["locator_loss_first_last"][0]


def test_each_checkpoint_holds_a_pipeline_folder_the_engine_loads(dataset, tmp_path):
    from dimo_engine.pipelines import load_pipeline

    output = tmp_path / "run"
    summary = train(_config(dataset, output, max_steps="2", checkpoint_every="2", use_ema="true", export="true"))
    checkpoint = output / "checkpoints" / "step_0000002"
    assert dimo(["info", "--model", str(checkpoint / "pipeline")]) == 0  # what `dimo generate --model` accepts
    at_checkpoint = load_pipeline(checkpoint / "pipeline", "cpu")
    exported = load_pipeline(summary["pipeline"], "cpu")
    assert at_checkpoint.config.num_frames == 5 and at_checkpoint.config.height == 32
    # The checkpoint's pipeline has the EMA weights of its step (the final export's), while accelerate's state keeps
    # the live weights the EMA copy was swapped out of.
    ema_weights = at_checkpoint.transformer.state_dict()
    assert all(torch.equal(value, exported.transformer.state_dict()[key]) for key, value in ema_weights.items())
    live = load_file(str(checkpoint / "model.safetensors"))
    assert any(not torch.equal(live[f"transformer.{key}"], value) for key, value in ema_weights.items()
               if f"transformer.{key}" in live)


@pytest.mark.slow
def test_two_processes_agree_on_weights(dataset, tmp_path):
    output = tmp_path / "ddp"
    with socket.socket() as probe:  # a free port, so parallel runs on one machine do not meet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # accelerate 1.x starts several CPU processes only through its torchrun path (--multi_gpu); the config's
    # cpu = true then gives the gloo backend. (`--cpu --num_processes 2` would start one process without mpirun.)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), "--num_cpu_threads_per_process", "1",
               "-m", "training.train", "--config", "tiny-cpu", "--dataset", str(dataset), "--output-dir", str(output),
               "--max-steps", "3", "--checkpoint-every", "3"] + [f"--set={k}={v}" for k, v in TINY.items() if k != "checkpoint_every"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
    try:
        log, _ = launcher.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and both ranks, nothing left behind
        log, _ = launcher.communicate()
        pytest.fail(f"the 2-process run did not finish in 240 s: {log[-3000:]}")
    assert launcher.returncode == 0, log[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    checksums = summary["rank_weight_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert [m["step"] for m in _metrics(output)] == [1, 2, 3]
    assert (output / "checkpoints" / "step_0000003" / "model.safetensors").is_file()
