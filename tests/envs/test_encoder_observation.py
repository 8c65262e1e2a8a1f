import numpy as np
import pytest
from torch import nn

import pvr.encoders
import pvr.envs
from pvr.encoders.base import Encoder
from pvr.envs import EncoderObservation, FrameStack
from pvr.errors import PvrError


class ChannelMean(nn.Module):
    def forward(self, x):  # (B, H, W, 3) floats (no preprocessing) -> (B, 3)
        return x.mean(dim=(1, 2))


def test_frames_become_features():
    enc = Encoder("mean", ChannelMean(), None, dim=3)
    env = EncoderObservation(pvr.envs.make("MiniGrid-Empty-5x5-v0"), enc)
    assert env.observation_space.shape == (3,) and env.observation_space.dtype == np.float32
    raw = pvr.envs.make("MiniGrid-Empty-5x5-v0")
    obs, info = env.reset(seed=0)
    frame, _ = raw.reset(seed=0)
    np.testing.assert_allclose(obs, frame.reshape(-1, 3).mean(0), rtol=1e-5)
    assert obs.dtype == np.float32 and "true_state" in info
    obs, *_ = env.step(2)
    np.testing.assert_allclose(obs, raw.step(2)[0].reshape(-1, 3).mean(0), rtol=1e-5)


def test_true_state_encoder_reads_info():
    enc = pvr.encoders.create("true_state")
    env = EncoderObservation(pvr.envs.make("CartPole-v1", image_size=16), enc)
    assert env.observation_space.shape == (4,)
    obs, info = env.reset(seed=1)
    np.testing.assert_array_equal(obs, info["true_state"])
    obs, *_, info = env.step(0)
    np.testing.assert_array_equal(obs, info["true_state"])
    env.close()


def test_stacked_views_are_embedded_one_by_one():
    enc = Encoder("mean", ChannelMean(), None, dim=3)
    env = EncoderObservation(pvr.envs.make("ImageNav-room_0", image_size=16), enc)
    assert env.observation_space.shape == (6,)
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    current, goal = u.backend.render(), u.goal_view
    np.testing.assert_allclose(obs, np.concatenate([current.reshape(-1, 3).mean(0), goal.reshape(-1, 3).mean(0)]),
                               rtol=1e-5)
    env.close()


def test_rejects_non_image_inputs():
    enc = Encoder("mean", ChannelMean(), None, dim=3)
    with pytest.raises(PvrError, match=r"\(H, W, 3k\) uint8"):
        EncoderObservation(FrameStack(pvr.envs.make("MiniGrid-Empty-5x5-v0"), 2, mode="diff"), enc)
