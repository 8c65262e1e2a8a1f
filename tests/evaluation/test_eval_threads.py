"""The evaluation process's threads: its share, a fixed count per evaluation, or (--adaptive_threads)
every core while the trainer waits for it; the episodes played stay the same."""
import gymnasium as gym
import pytest
import torch

import pvr.encoders as E
import pvr.envs
from pvr.bc.policy import ActionSpec, Policy
from pvr.encoders import runtime as R
from pvr.evaluation.worker import EvalWorker

ENV = "MiniGrid-Empty-5x5-v0"


def _random3():
    return E.create("random3").fit_frames(pvr.envs.make(ENV).observation_space.shape)


def _spec(enc, action, **kw) -> dict:
    return dict(plugins=[], embedding_name="random3", encoder_kwargs={}, fingerprint=enc.fingerprint,
                obs_dim=enc.dim, action=action.to_dict(), policy_kwargs={}, envs=[ENV],
                env_kwargs={ENV: {"max_steps": 12}}, device="cpu", episodes=4, num_envs=2, seed=5,
                num_input_frames=1, frame_stack_mode="cat", progress=False, **kw)


def test_worker_uses_all_its_threads_only_while_the_trainer_waits():
    enc = _random3()
    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    torch.manual_seed(0)
    weights = {"policy": Policy(enc.dim, action).state_dict()}
    with EvalWorker(_spec(enc, action, threads=1, threads_waited=2)) as worker:
        worker.submit(0, weights)
        while (done := worker.result(block=False)) is None:  # a trainer that keeps training: never waits
            pass
        polled, polled_threads = done[1], worker.last_threads
        worker.submit(1, weights)
        _, waited = worker.result()  # a trainer blocked at an evaluation point
        waited_threads = worker.last_threads
    assert {n for n, _ in polled_threads} == {1}, polled_threads
    assert waited_threads[-1][0] == 2, waited_threads  # by the last encoder call the flag was certainly seen
    assert sum(c for _, c in waited_threads) == sum(c for _, c in polled_threads) > 0
    assert waited[ENV] == polled[ENV]  # same episodes, same outcome


def test_worker_without_a_waited_setting_keeps_its_share_or_the_count_given_per_evaluation():
    enc = _random3()
    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    weights = {"policy": Policy(enc.dim, action).state_dict()}
    with EvalWorker(_spec(enc, action, threads=1)) as worker:
        worker.submit(0, weights)
        _, share = worker.result()  # the trainer waits: without threads_waited nothing changes
        assert {n for n, _ in worker.last_threads} == {1}
        worker.submit(1, weights, threads=2)  # e.g. the final evaluation
        _, final = worker.result()
        assert {n for n, _ in worker.last_threads} == {2}
    assert share[ENV] == final[ENV]


@pytest.mark.skipif(not R.is_available("onnxruntime"), reason="onnxruntime or onnx is not installed")
def test_use_threads_gives_a_runtime_one_checked_session_per_thread_count(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_RUNTIME_CACHE", str(tmp_path / "rt-cache"))
    before = torch.get_num_threads()
    try:
        enc = E.create("resnet18", pretrained=False, seed=1)
        R.apply_runtime(enc, "onnxruntime", frame_shape=(64, 64, 3), threads=1)
        frames = R.sample_frames(enc, 3, (64, 64, 3))
        with torch.inference_mode():
            one = enc(frames)
            R.use_threads(enc, 2)
            assert torch.get_num_threads() == 2
            two = enc(frames)
            R.use_threads(enc, 1)
            again = enc(frames)
        fwd = enc.backbone.__dict__["forward"]
        assert sorted(k[-1] for k in fwd.sessions) == [1, 2]  # a session per thread count, reused after
        assert R.runtime_info(enc).runtime == "onnxruntime"
        assert R.within_tolerance(two, one) and torch.equal(again, one)
    finally:
        torch.set_num_threads(before)


def test_use_threads_sets_torch_threads_for_a_torch_encoder():
    before = torch.get_num_threads()
    try:
        enc = E.create("random3")
        R.use_threads(enc, 1)
        assert torch.get_num_threads() == 1
        R.use_threads(enc, 0)  # never fewer than one
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_evaluating_turns_false_when_the_worker_finishes_before_its_result_is_read():
    import time

    enc = _random3()
    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    with EvalWorker(_spec(enc, action, threads=1)) as worker:
        assert not worker.evaluating()
        worker.submit(0, {"policy": Policy(enc.dim, action).state_dict()})
        assert worker.evaluating() and worker.busy()
        deadline = time.time() + 120
        while worker.evaluating() and time.time() < deadline:
            time.sleep(0.05)
        assert not worker.evaluating() and worker.busy()  # done, result not collected yet
        while (done := worker.result(block=False)) is None and time.time() < deadline:
            time.sleep(0.01)  # the flag is cleared just before the result is sent
        assert done is not None and done[0] == 0
        assert not worker.busy()
