"""`pvr train --runtime`: the evaluation process runs its frozen encoder with ONNX Runtime / OpenVINO,
with the same episodes as torch; refusals where a runtime cannot apply."""
import gymnasium as gym
import pytest
import torch

import pvr.encoders as E
from pvr.bc.config import TrainConfig
from pvr.bc.policy import ActionSpec, Policy
from pvr.encoders import runtime as R
from pvr.errors import PvrError
from pvr.evaluation.worker import EvalWorker

ENV = "MiniGrid-Empty-5x5-v0"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_RUNTIME_CACHE", str(tmp_path / "rt-cache"))  # the worker inherits it


def _spec(runtime: str, enc, action) -> dict:
    return dict(plugins=[], embedding_name="resnet18", encoder_kwargs={"pretrained": False}, encoder_seed=3,
                fingerprint=enc.fingerprint, obs_dim=enc.dim, action=action.to_dict(), policy_kwargs={},
                envs=[ENV], env_kwargs={ENV: {"max_steps": 15}}, device="cpu", episodes=3, num_envs=1, seed=7,
                num_input_frames=1, frame_stack_mode="cat", progress=False, runtime=runtime)


@pytest.mark.parametrize("runtime", [pytest.param(r, marks=pytest.mark.skipif(
    not R.is_available(r), reason=f"{r} or onnx is not installed")) for r in ("onnxruntime", "openvino")])
def test_worker_with_a_runtime_plays_the_episodes_torch_plays(runtime):
    enc = E.create("resnet18", pretrained=False, seed=3)
    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    torch.manual_seed(0)
    weights = {"policy": Policy(enc.dim, action).state_dict()}
    results = {}
    for rt in ("torch", runtime):
        with EvalWorker(_spec(rt, enc, action)) as worker:
            worker.submit(0, weights)
            _, out = worker.result()
        results[rt] = out[ENV]
    assert results["torch"]["episodes"] == 3
    # features agree within 1e-4 of their magnitude: the policy takes the same actions, episode for episode
    for key in ("return", "length", "success"):
        assert results[runtime][key] == results["torch"][key], key


def test_runtime_is_refused_for_a_fine_tuned_encoder():
    cfg = TrainConfig(env=ENV, embedding_name="resnet18", runtime="onnxruntime", train_embedding=True)
    with pytest.raises(PvrError, match="--runtime torch"):
        cfg.validate()
    with pytest.raises(PvrError, match="--runtime must be one of"):
        TrainConfig(env=ENV, runtime="tensorrt").validate()
    assert TrainConfig(env=ENV, runtime="auto").validate().runtime == "auto"


def test_worker_refuses_a_runtime_on_a_gpu_device_before_evaluating():
    enc = E.create("resnet18", pretrained=False, seed=3)
    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    spec = {**_spec("onnxruntime", enc, action), "device": "cuda:0"}
    with pytest.raises(PvrError, match="runs encoders on a CPU"):
        EvalWorker(spec)


def test_train_and_benchmark_flags_carry_the_runtime(tmp_path):
    import argparse

    from pvr.bc.config import add_arguments, from_namespace
    from pvr.benchmark import load, plan

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert from_namespace(p.parse_args(["--env", ENV, "--runtime", "openvino"])).runtime == "openvino"
    grid = plan(load("quick"), "random,true_state", seeds="1", save_path=str(tmp_path), runtime="auto")
    by_encoder = {r.cfg.embedding_name: r.cfg.runtime for r in grid.runs}
    assert by_encoder == {"random": "auto", "true_state": "torch"}  # state vectors have no frames to export


@pytest.mark.skipif(not R.is_available("onnxruntime"), reason="onnxruntime or onnx is not installed")
def test_evaluating_a_saved_run_with_a_runtime_plays_the_episodes_torch_plays(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from pvr.bc import trainer
    from pvr.collect import collect
    from pvr.evaluation.saved import evaluate_run

    env = "MiniGrid-DoorKey-5x5-v0"
    collect(env, 4, tmp_path / "data", seed=100, env_kwargs={"max_steps": 20}, progress=False)
    cfg = TrainConfig(env=env, embedding_name="random", data_path=str(tmp_path / "data"),
                      save_path=str(tmp_path / "runs"), xpid="run", epochs=1, num_episodes_test=2,
                      num_envs_test=1, hidden_size=16, batch_size=2, unroll_length=8, learning_rate=1e-3, seed=3)
    run = trainer.train(cfg, progress=False)
    ref = evaluate_run(run, episodes=4, num_envs=1, progress=False)[env]
    used = []
    real = R.apply_runtime

    def spy(encoder, runtime, **kw):
        out = real(encoder, runtime, **kw)
        used.append(R.runtime_info(out).runtime)
        return out

    monkeypatch.setattr(R, "apply_runtime", spy)
    got = evaluate_run(run, episodes=4, num_envs=1, progress=False, runtime="onnxruntime")[env]
    assert used == ["onnxruntime"]
    assert (got["return"], got["length"], got["success"]) == (ref["return"], ref["length"], ref["success"])
    r = subprocess.run([sys.executable, "-m", "pvr", "evaluate", str(run), "--num_episodes_test", "2",
                        "--num_envs_test", "1", "--runtime", "onnxruntime"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert r.returncode == 0 and f"{env} : return" in r.stdout, r.stderr[-2000:]
