"""`--recipe cortexbench`: CortexBench's MuJoCo visual-imitation learner, against the upstream re-stated here.

Expected values are written from facebookresearch/eai-vc (cortexbench/mujoco_vc: visual_imitation/train_loop.py,
visual_imitation/config/*_BC_config.yaml, src/mujoco_vc/model_loading.py, src/mujoco_vc/gym_wrapper.py) and the
mjrl commit it pins (83d35df: mjrl/utils/fc_network.py FCNetworkWithBatchNorm, mjrl/policies/gaussian_mlp.py
BatchNormMLP), not computed by the code under test.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pvr.data
from pvr.bc import recipes, stacking
from pvr.bc.config import TrainConfig, add_arguments, from_namespace
from pvr.bc.policy import ActionSpec
from pvr.bc.sampler import Demonstrations, episode_starts
from pvr.bc.stacking import OnlineStacker, fuse, proprio_dims, stack_indices
from pvr.bc.trainer import train_epoch

BOX = ActionSpec(False, 3, (-1.0,) * 3, (1.0,) * 3)


def parse(*argv):
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    return from_namespace(ap.parse_args(["--env", "x", *argv]))


def cortexbench_policy(obs_dim, action=BOX, **flags):
    cfg = TrainConfig(env="x", embedding_name="random", recipe="cortexbench", **flags).validate()
    r = recipes.get("cortexbench")
    return r.policy(obs_dim, action, r.policy_kwargs(cfg, action)), cfg


# -- the network: mjrl FCNetworkWithBatchNorm / BatchNormMLP, re-stated ------------------------------------

class Upstream(nn.Module):
    """fc_network.py:67-104 with hidden_sizes (256, 256, 256), relu, dropout 0 (the configs' bc_kwargs), and
    gaussian_mlp.py:179-182: 'make weights small' scales list(model.parameters())[-2:] by 1e-2."""

    def __init__(self, obs_dim, act_dim, hidden=(256, 256, 256)):
        super().__init__()
        sizes = (obs_dim, *hidden, act_dim)
        self.fc_layers = nn.ModuleList([nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)])
        self.input_batchnorm = nn.BatchNorm1d(obs_dim)
        for p in list(self.parameters())[-2:]:
            p.data = 1e-2 * p.data

    def forward(self, x):
        out = self.input_batchnorm(x)
        for layer in self.fc_layers[:-1]:
            out = torch.relu(layer(out))
        return self.fc_layers[-1](out)


def test_network_is_batchnorm_then_three_256_relu_layers_and_a_linear_output():
    torch.manual_seed(0)
    p, _ = cortexbench_policy(10)
    assert [type(m) for m in p.fc] == [nn.BatchNorm1d] + [nn.Linear, nn.ReLU] * 3
    assert [m.out_features for m in p.fc if isinstance(m, nn.Linear)] == [256, 256, 256]
    assert p.fc[0].num_features == 10 and p.core is None
    assert (p.head.in_features, p.head.out_features) == (256, 3)
    assert p.squash == "none"  # linear mean: no tanh
    assert torch.equal(p.log_std.detach(), torch.zeros(3))  # init_log_std 0


def test_small_weights_land_on_the_input_batchnorm_as_upstream():
    # upstream registers fc_layers before input_batchnorm, so the "last layer" it shrinks is the BatchNorm
    up = Upstream(10, 3)
    assert torch.allclose(up.input_batchnorm.weight, torch.full((10,), 0.01))
    torch.manual_seed(0)
    p, _ = cortexbench_policy(10)
    torch.testing.assert_close(p.fc[0].weight.detach(), torch.full((10,), 0.01))
    torch.testing.assert_close(p.fc[0].bias.detach(), torch.zeros(10))
    # the head keeps PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), not shrunk
    bound = 1 / np.sqrt(256)
    w = p.head.weight.detach()
    assert w.abs().max() <= bound and w.abs().max() > 0.5 * bound


def test_forward_equals_the_upstream_network_with_the_same_weights():
    torch.manual_seed(1)
    p, _ = cortexbench_policy(10)
    up = Upstream(10, 3)
    linears = [m for m in p.fc if isinstance(m, nn.Linear)] + [p.head]
    with torch.no_grad():
        for mine, theirs in zip(linears, up.fc_layers):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
        up.input_batchnorm.weight.copy_(p.fc[0].weight)
        up.input_batchnorm.bias.copy_(p.fc[0].bias)
    x = torch.randn(7, 10) * 3 + 1
    first = torch.zeros(1, 7, dtype=torch.bool)
    for train in (True, False):  # batch statistics in training, running statistics in evaluation
        p.train(train)
        up.train(train)
        out, _ = p(x[None], first)
        torch.testing.assert_close(p.mean_action(out)[0], up(x))
    assert sum(t.numel() for t in up.parameters()) + 3 == sum(t.numel() for t in p.parameters())  # + log_std


# -- fusion: fuse_embeddings_flare + proprioception --------------------------------------------------------

def test_fusion_is_differences_then_the_last_embedding_then_proprio_by_hand():
    # model_loading.py:49-54: [e1 - e0, e2 - e1, e2] for a window oldest first; gym_wrapper.py:180 appends proprio
    window = np.array([[1.0, 2.0], [4.0, 8.0], [5.0, 5.0]])
    np.testing.assert_array_equal(fuse(window, "diff", np.array([9.0])), [3, 6, 1, -3, 5, 5, 9])
    np.testing.assert_array_equal(fuse(window, "diff"), [3, 6, 1, -3, 5, 5])
    t = fuse(torch.tensor(window)[None], "diff", torch.tensor([[9.0]]))
    assert t.tolist() == [[3, 6, 1, -3, 5, 5, 9]]


def test_history_is_padded_with_the_first_embedding_and_proprio_is_the_current_steps():
    # train_loop.py:373-382: embeddings[max(t - k, 0)], proprio at t; gym_wrapper.py:161-163 at a reset
    emb = np.arange(8, dtype=np.float32).reshape(4, 2) ** 2   # one episode of 4 steps, D = 2
    prop = np.arange(100, 104, dtype=np.float32)[:, None]
    data = Demonstrations(emb, np.zeros((4, 3), np.float32), episode_starts(np.array([4]), 4),
                          stack_indices(np.array([4]), 3), stack_mode="diff", proprio=prop)
    got = data.observations(np.arange(4))
    e = emb
    expected = [
        [0, 0, 0, 0, *e[0], 100],
        [0, 0, *(e[1] - e[0]), *e[1], 101],
        [*(e[1] - e[0]), *(e[2] - e[1]), *e[2], 102],
        [*(e[2] - e[1]), *(e[3] - e[2]), *e[3], 103],
    ]
    np.testing.assert_array_equal(got, np.array(expected, np.float32))
    # evaluation builds the same observations step by step
    st = OnlineStacker(1, 3, "diff")
    online = [st(emb[t][None], np.array([t == 0]), prop[t][None])[0] for t in range(4)]
    np.testing.assert_array_equal(np.stack(online), got)


def test_proprioception_is_cortexbenchs_prefix_of_the_state():
    # gym_wrapper.py:260-280: pen get_obs()[:24], relocate [:30], MetaWorld _get_obs()[:4], DMC None
    assert proprio_dims("HMS-pen-v0") == 24 and proprio_dims("HMS-relocate-v0") == 30
    assert proprio_dims("MetaWorld-assembly-v3") == 4
    assert proprio_dims("HMS-door-v0") == 0 and proprio_dims("DMC-walker-walk") == 0
    assert proprio_dims("MiniGrid-DoorKey-5x5-v0") == 0


# -- loss and optimiser ------------------------------------------------------------------------------------

def test_loss_is_torch_mse_on_the_mean_and_ignores_masked_steps():
    torch.manual_seed(0)
    p, _ = cortexbench_policy(4)
    out, actions = torch.randn(1, 5, 3), torch.randn(1, 5, 3)
    mask = torch.ones(1, 5, dtype=torch.bool)
    loss = recipes.get("cortexbench").loss(p, out, actions, mask)
    torch.testing.assert_close(loss, nn.MSELoss()(out[0], actions[0]))
    mask[0, 3:] = False
    loss = recipes.get("cortexbench").loss(p, out, actions, mask)
    torch.testing.assert_close(loss, nn.MSELoss()(out[0, :3], actions[0, :3]))


def test_mse_decreases_with_adam_on_a_tiny_dataset_and_the_log_std_stays_put():
    rng = np.random.default_rng(0)
    n = 300
    obs = rng.normal(size=(n, 6)).astype(np.float32)
    w = rng.normal(size=(6, 3)).astype(np.float32)
    actions = np.tanh(obs @ w).astype(np.float32)
    data = Demonstrations(obs, actions, episode_starts(np.array([100, 200, 300]), n))
    torch.manual_seed(0)
    p, cfg = cortexbench_policy(6)
    cfg.batch_size = 64
    r = recipes.get("cortexbench")
    opt = r.optimizer(list(p.parameters()), cfg)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 1e-3
    sched, per_update = r.scheduler(opt, cfg, 1)
    losses = [train_epoch(p, opt, sched, data, cfg, e, torch.device("cpu"), loss_fn=r.loss)["loss"]
              for e in range(1, 16)]
    assert losses[-1] < 0.5 * losses[0]
    assert opt.param_groups[0]["lr"] == 1e-3  # constant
    assert torch.equal(p.log_std.detach(), torch.zeros(3))


def test_batches_are_single_shuffled_frames_of_256():
    # train_loop.py:129-135: DataLoader(batch_size=256, shuffle=True) over (trajectory, step) samples
    from pvr.bc.sampler import batches

    cfg = TrainConfig(env="x", recipe="cortexbench").validate()
    n = 600
    data = Demonstrations(np.arange(n, dtype=np.float32)[:, None], np.zeros((n, 1), np.float32),
                          episode_starts(np.array([n]), n))
    got = list(batches(data, unroll=cfg.unroll_length, batch_size=cfg.batch_size, seed=1, epoch=1))
    assert [b["obs"].shape[:2] for b in got] == [(1, 256), (1, 256), (1, 88)]
    seen = torch.cat([b["obs"].flatten() for b in got])
    assert sorted(seen.tolist()) == list(range(n)) and seen.tolist() != list(range(n))


# -- defaults only where the user set nothing --------------------------------------------------------------

def test_recipe_defaults_fill_only_unset_flags():
    c = parse("--recipe", "cortexbench", "--embedding_name", "random").validate()
    assert (c.epochs, c.batch_size, c.unroll_length, c.learning_rate, c.max_grad_norm, c.num_input_frames,
            c.frame_stack_mode, c.eval_every, c.action_squash, c.batch_norm, c.proprio, c.disable_lstm) == \
        (100, 256, 1, 1e-3, 0.0, 3, "diff", 5, "linear", True, True, True)
    # explicit values win, including ones equal to the original's defaults
    c = parse("--recipe", "cortexbench", "--embedding_name", "random", "--batch_size", "16", "--learning_rate",
              "1e-4", "--num_input_frames", "1", "--frame_stack_mode", "cat", "--eval_every", "10",
              "--no_proprio", "--no_batch_norm", "--epochs", "7", "--max_grad_norm", "40").validate()
    assert (c.batch_size, c.learning_rate, c.num_input_frames, c.frame_stack_mode, c.eval_every, c.proprio,
            c.batch_norm, c.epochs, c.max_grad_norm, c.unroll_length) == \
        (16, 1e-4, 1, "cat", 10, False, False, 7, 40.0, 1)
    # true_state: BatchNorm stays on (the upstream network always has it); the state already holds proprio
    c = parse("--recipe", "cortexbench", "--embedding_name", "true_state").validate()
    assert (c.batch_norm, c.proprio) == (True, False)
    # the original recipe is untouched
    c = parse("--embedding_name", "random").validate()
    assert (c.epochs, c.batch_size, c.unroll_length, c.learning_rate, c.max_grad_norm, c.num_input_frames,
            c.frame_stack_mode, c.eval_every, c.action_squash, c.batch_norm, c.proprio, c.disable_lstm) == \
        (100, 16, 100, 1e-4, 40.0, 1, "cat", None, "symmetric", True, False, False)
    again = TrainConfig(**c.to_dict()).validate()  # resolving twice changes nothing
    assert again.to_dict() == c.to_dict()


def test_help_names_each_recipes_default():
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    text = ap.format_help()
    assert "original 16, cortexbench 256" in " ".join(text.split())


def test_evaluation_points_are_cortexbenchs():
    # train_loop.py:179-181, after the 0-based epoch e: (e % eval_frequency == 0 and e > 0) or e == epochs - 1
    def upstream(epochs, freq):
        return [e + 1 for e in range(epochs) if (e % freq == 0 and e > 0) or e == epochs - 1]

    assert recipes.get("cortexbench").eval_epochs(100, 5) == upstream(100, 5) == \
        [6, 11, 16, 21, 26, 31, 36, 41, 46, 51, 56, 61, 66, 71, 76, 81, 86, 91, 96, 100]
    for epochs, freq in [(1, 5), (7, 3), (12, 4), (30, 10)]:
        assert recipes.get("cortexbench").eval_epochs(epochs, freq) == upstream(epochs, freq)


# -- training and evaluation see the same observations -----------------------------------------------------

ENV = "Pendulum-v1"
ENV_KWARGS = {"image_size": 16, "max_episode_steps": 10}


def _record(path: Path, episodes: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Episodes of the live env under a smooth state feedback (so there is something to imitate); episode i
    is reset with seed + i, as evaluation resets its episode i. Returns each episode's actions."""
    import pvr.envs

    env = pvr.envs.make(ENV, **ENV_KWARGS)
    ds = pvr.data.create(path, env=ENV, meta={"env_kwargs": ENV_KWARGS})
    all_actions = []
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            frames, states, actions = [], [], []
            while True:
                s = info["true_state"]
                a = np.clip([-1.5 * s[1] - 0.3 * s[2]], -2, 2).astype(np.float32)
                frames.append(obs); states.append(s); actions.append(a)
                obs, _, term, trunc, info = env.step(a)
                if term or trunc:
                    break
            done = np.zeros(len(frames), bool)
            done[-1] = True
            ds.append_episode(obs=np.stack(frames), action=np.stack(actions), true_state=np.stack(states),
                              reward=np.zeros(len(frames), np.float32), done=done)
            all_actions.append(np.stack(actions))
    finally:
        ds.close()
        env.close()
    return all_actions


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    _record(d / f"{ENV}.zarr")
    return d


class Replay(nn.Module):
    """A stand-in policy that replays recorded actions and keeps every observation it was given."""

    def __init__(self, actions):
        super().__init__()
        self.actions, self.seen, self.t = actions, [], 0
        self.w = nn.Parameter(torch.zeros(1))

    def initial_state(self, b):
        return ()

    @torch.no_grad()
    def act(self, obs, first, state=()):
        self.seen.append(obs[0].clone())
        a = torch.as_tensor(self.actions[min(self.t, len(self.actions) - 1)])[None]
        self.t += 1
        return a, state


def test_evaluation_fuses_frames_and_proprio_exactly_as_training(data_path, monkeypatch):
    """Replaying a recorded episode in the live env, the observations evaluation feeds the policy are the
    training observations of that episode (frames fused by differences + proprioception)."""
    from pvr.bc import trainer
    from pvr.embed import make_encoder, open_dataset
    from pvr.evaluation.rollout import evaluate

    monkeypatch.setitem(stacking.PROPRIO_PREFIX, ENV, 2)  # give this env a proprioception for the test
    cfg = TrainConfig(env=ENV, embedding_name="random", recipe="cortexbench", data_path=str(data_path),
                      seed=2).validate()
    trainer.ensure_features(cfg)
    data, facts = trainer.load_demonstrations(cfg)
    with open_dataset(data_path, ENV) as ds:
        enc = make_encoder("random", ds, seed=2)
        ends = ds.episode_ends
        actions = np.asarray(ds["action"][: ends[0]])
    assert facts["proprio_dims"] == {ENV: 2} and facts["obs_dim"] == 3 * enc.dim + 2
    policy = Replay(actions)
    evaluate(policy, enc, ENV, episodes=1, seed=0, num_envs=1, env_kwargs=ENV_KWARGS,
             num_input_frames=cfg.num_input_frames, frame_stack_mode=cfg.frame_stack_mode,
             proprio_dims=proprio_dims(ENV), progress=False)
    online = torch.stack(policy.seen).numpy()
    offline = data.observations(np.arange(int(ends[0])))
    assert online.shape == offline.shape == (int(ends[0]), 3 * enc.dim + 2)
    np.testing.assert_allclose(online, offline, rtol=1e-5, atol=1e-5)


def pvr_cli(*args, timeout=400):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "pvr", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.slow  # three CLI runs with spawned evaluation: about 2 minutes on a shared 2-core machine
def test_pvr_train_recipe_cortexbench_end_to_end_then_evaluate(data_path, tmp_path):
    save = tmp_path / "runs"
    r = pvr_cli("train", "--recipe", "cortexbench", "--env", ENV, "--embedding_name", "random", "--data_path",
                str(data_path), "--save_path", str(save), "--xpid", "cb", "--epochs", "7", "--eval_every", "3",
                "--num_episodes_test", "2", "--num_envs_test", "2", "--seed", "100", "--disable_tensorboard")
    assert r.returncode == 0, r.stderr[-3000:]
    run = save / "cb"
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["recipe"], cfg["batch_size"], cfg["learning_rate"], cfg["unroll_length"], cfg["num_input_frames"],
            cfg["frame_stack_mode"], cfg["proprio"], cfg["max_grad_norm"], cfg["eval_every"]) == \
        ("cortexbench", 256, 1e-3, 1, 3, "diff", True, 0.0, 3)
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(8))
    assert [row["epoch"] for row in rows if row["test"]] == [4, 7]  # after 0-based epochs 3 and 6
    assert all(np.isfinite(row["test"][ENV]["return"]) for row in rows if row["test"])
    saved = torch.load(run / "policy.pt", weights_only=True)
    assert saved["policy_kwargs"]["layers"] == 3 and saved["policy_kwargs"]["init"] == "mjrl"
    info = json.loads((run / "run.json").read_text())
    assert info["facts"]["proprio_dims"] == {ENV: 0}  # Pendulum has no proprioception
    # pvr evaluate rebuilds the same policy and fusion from the saved run
    e = pvr_cli("evaluate", str(run), "--num_episodes_test", "2", "--num_envs_test", "2")
    assert e.returncode == 0, e.stderr[-3000:]
    assert ENV in e.stdout
    # rerunning the same command finds the run finished; another setting is refused
    again = pvr_cli("train", "--recipe", "cortexbench", "--env", ENV, "--embedding_name", "random",
                    "--data_path", str(data_path), "--save_path", str(save), "--xpid", "cb", "--epochs", "7",
                    "--eval_every", "3", "--num_episodes_test", "2", "--num_envs_test", "2", "--seed", "100",
                    "--disable_tensorboard")
    assert again.returncode == 0 and "already finished" in again.stdout


# -- Adroit: proprioception is the hand's joint positions, through training and the evaluation process -----

@pytest.mark.parametrize("env_name, dims", [("HMS-pen-v0", 24), ("HMS-relocate-v0", 30)])
def test_adroit_proprio_prefix_is_the_hand_joint_positions(env_name, dims):
    # GW get_proprioception: get_obs()[:24] / [:30], i.e. qpos[:-6] of mj_envs' pen / relocate observation
    import pvr.envs

    env = pvr.envs.make(env_name, image_size=16, max_episode_steps=3)
    try:
        _, info = env.reset(seed=0)
        env.step(env.action_space.sample())
        _, _, _, _, info = env.step(env.action_space.sample())
        qpos = env.unwrapped.data.qpos
        assert len(qpos) - 6 == dims == proprio_dims(env_name)
        np.testing.assert_allclose(info["true_state"][:dims], qpos[:-6].astype(np.float32), rtol=1e-6)
    finally:
        env.close()


@pytest.mark.slow  # Adroit env builds in three processes: about 2 minutes on a shared 2-core machine
def test_adroit_run_appends_proprio_in_training_and_in_the_evaluation_process(tmp_path):
    import pvr.envs
    from pvr.bc import trainer

    env_name, kwargs = "HMS-pen-v0", {"image_size": 16, "max_episode_steps": 6}
    data = tmp_path / "data"
    env = pvr.envs.make(env_name, **kwargs)
    ds = pvr.data.create(data / f"{env_name}.zarr", env=env_name, meta={"env_kwargs": kwargs})
    rng = np.random.default_rng(0)
    try:
        for i in range(3):
            obs, info = env.reset(seed=i)
            frames, states, actions = [], [], []
            while True:
                a = rng.uniform(-1, 1, 24).astype(np.float32)
                frames.append(obs); states.append(info["true_state"]); actions.append(a)
                obs, _, term, trunc, info = env.step(a)
                if term or trunc:
                    break
            done = np.zeros(len(frames), bool)
            done[-1] = True
            ds.append_episode(obs=np.stack(frames), action=np.stack(actions), true_state=np.stack(states),
                              reward=np.zeros(len(frames), np.float32), done=done)
    finally:
        ds.close()
        env.close()
    cfg = TrainConfig(env=env_name, embedding_name="random", recipe="cortexbench", data_path=str(data),
                      save_path=str(tmp_path / "runs"), xpid="pen", epochs=2, eval_every=1, num_episodes_test=1,
                      num_envs_test=1, seed=100, disable_tensorboard=True)
    run = trainer.train(cfg, progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["facts"]["proprio_dims"] == {env_name: 24}
    from pvr.embed import make_encoder, open_dataset

    with open_dataset(data, env_name) as d:
        dim = make_encoder("random", d, seed=100).dim
    assert info["facts"]["obs_dim"] == 3 * dim + 24
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["test"]] == [2]  # the worker fed the policy 3 * dim + 24 inputs
    assert rows[-1]["test"][env_name]["episodes"] == 1


def test_a_last_batch_of_one_frame_joins_the_previous_one():
    # BatchNorm in training cannot normalise a single sample (upstream's DataLoader would fail there)
    from pvr.bc.sampler import batches

    n = 257
    data = Demonstrations(np.arange(n, dtype=np.float32)[:, None], np.zeros((n, 1), np.float32),
                          episode_starts(np.array([n]), n))
    got = list(batches(data, unroll=1, batch_size=256, seed=1, epoch=1))
    assert [b["obs"].shape[:2] for b in got] == [(1, 257)]
    p, _ = cortexbench_policy(1)
    p.train()
    p(got[0]["obs"], got[0]["first"])  # runs
    # windows longer than one step keep their batches as they were
    assert len(list(batches(data, unroll=2, batch_size=128, seed=1, epoch=1))) == 2


def test_fine_tuning_windows_fuse_like_frozen_features():
    # --train_embedding encodes raw frames per batch; its observations must equal the frozen-feature ones
    from pvr.bc.trainer import _encode_window
    from pvr.embed import make_encoder

    rng = np.random.default_rng(0)
    ends = np.array([4, 9])
    frames = rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    prop = rng.normal(size=(9, 5)).astype(np.float32)
    enc = make_encoder("random", seed=3).eval()
    with torch.no_grad():
        feats = enc(torch.from_numpy(frames)).numpy()
    first = episode_starts(ends, 9)
    raw = Demonstrations(frames, np.zeros((9, 2), np.float32), first, stack_indices(ends, 3), raw=True,
                         stack_mode="diff", proprio=prop)
    frozen = Demonstrations(feats, np.zeros((9, 2), np.float32), first, stack_indices(ends, 3),
                            stack_mode="diff", proprio=prop)
    cfg = TrainConfig(env="x", embedding_name="random", recipe="cortexbench").validate()
    index = torch.arange(9).view(1, 9)
    with torch.no_grad():
        got = _encode_window(enc, raw, index, cfg, torch.device("cpu"))
    np.testing.assert_allclose(got.numpy(), frozen.observations(index.numpy()), rtol=1e-5, atol=1e-5)
    assert got.shape == (1, 9, 3 * feats.shape[1] + 5)
