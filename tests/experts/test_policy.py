import pickle

import numpy as np
import pytest
import torch

import pvr.data
import pvr.envs
import pvr.experts
from pvr.collect import collect
from pvr.errors import PvrError


class CartPoleLaw(torch.nn.Module):
    """The classic CartPole feedback law as a torch module (logits over the 2 actions)."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor([0.1, 0.5, 10.0, 2.0]))

    def forward(self, s):
        z = (s * self.k).sum(-1, keepdim=True)
        return torch.cat([-z, z], -1)


def make_law():
    return CartPoleLaw()


def test_torchscript_policy_as_expert(tmp_path):
    f = tmp_path / "law.pt"
    torch.jit.save(torch.jit.script(CartPoleLaw()), str(f))
    path = collect("CartPole-v1", 1, tmp_path, expert=f"policy:{f}", env_kwargs={"image_size": 16, "max_episode_steps": 60},
                   keep_failures=True, progress=False)
    ds = pvr.data.open(path)
    try:
        ep = ds.episode(0)
        assert len(ep["action"]) == 60  # balanced for the whole (short) episode
        assert ds.meta["expert"]["name"] == "policy" and ds.meta["expert"]["format"] == "torch"
    finally:
        ds.close()


def test_state_dict_with_factory_and_unsafe_pickle(tmp_path):
    f = tmp_path / "law_sd.pt"
    torch.save(CartPoleLaw().state_dict(), str(f))
    env = pvr.envs.make("CartPole-v1", image_size=16)
    try:
        with pytest.raises(PvrError, match="factory"):
            pvr.experts.create(f"policy:{f}", env)
        expert = pvr.experts.create(f"policy:{f}", env, factory=f"{__name__}:make_law")
        obs, info = env.reset(seed=0)
        assert expert.act(obs, info) in (0, 1)
        evil = tmp_path / "evil.pt"
        evil.write_bytes(pickle.dumps({"x": np.zeros(2)}))  # a numpy object: refused by weights_only
        with pytest.raises(PvrError):
            pvr.experts.create(f"policy:{evil}", env, factory=f"{__name__}:make_law")
        with pytest.raises(PvrError, match="no policy file"):
            pvr.experts.create(f"policy:{tmp_path / 'missing.pt'}", env)
    finally:
        env.close()


def test_sb3_zip_needs_sb3(tmp_path):
    try:
        import stable_baselines3  # noqa: F401
        pytest.skip("stable-baselines3 installed")
    except ImportError:
        pass
    f = tmp_path / "model.zip"
    f.write_bytes(b"PK")
    env = pvr.envs.make("CartPole-v1", image_size=16)
    try:
        with pytest.raises(PvrError, match="pip install stable-baselines3"):
            pvr.experts.create(f"policy:{f}", env)
    finally:
        env.close()
