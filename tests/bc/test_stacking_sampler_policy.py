import numpy as np
import pytest
import torch

from pvr.bc.policy import ActionSpec, Policy
from pvr.bc.sampler import Demonstrations, batches, episode_starts
from pvr.bc.stacking import OnlineStacker, combine, stack_episodes, stack_indices


def test_cat_and_diff_stacking_pad_with_the_first_frame_of_each_episode():
    f = np.arange(5, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # frames 0..4, D=2
    ends = np.array([2, 5])
    cat = stack_episodes(f, ends, 3, "cat")
    assert cat.shape == (5, 6)
    np.testing.assert_array_equal(cat[0], [0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(cat[1], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(cat[2], [2, 2, 2, 2, 2, 2])  # new episode: no leak from episode 1
    np.testing.assert_array_equal(cat[4], [2, 2, 3, 3, 4, 4])
    diff = stack_episodes(f, ends, 3, "diff")
    np.testing.assert_array_equal(diff[4], [1, 1, 1, 1, 4, 4])
    np.testing.assert_array_equal(diff[2], [0, 0, 0, 0, 2, 2])


@pytest.mark.parametrize("mode", ["cat", "diff"])
def test_online_stacker_matches_offline_stacking(mode):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(7, 3)).astype(np.float32)
    ends = np.array([3, 7])
    offline = stack_episodes(f, ends, 4, mode)
    st = OnlineStacker(1, 4, mode)
    first = episode_starts(ends, 7)
    online = np.stack([st(f[t : t + 1], first[t : t + 1])[0] for t in range(7)])
    np.testing.assert_allclose(online, offline)


def test_sampler_covers_every_step_exactly_once_and_is_deterministic():
    n = 53
    data = Demonstrations(np.arange(n, dtype=np.float32)[:, None], np.arange(n), episode_starts(np.array([20, 53]), n))
    for epoch in range(3):
        seen = []
        for b in batches(data, unroll=8, batch_size=3, seed=1, epoch=epoch):
            assert b["first"][0].all()
            seen += b["actions"][b["mask"]].tolist()
        assert sorted(seen) == list(range(n))
    a = [b["actions"].tolist() for b in batches(data, unroll=8, batch_size=3, seed=1, epoch=2)]
    b = [b["actions"].tolist() for b in batches(data, unroll=8, batch_size=3, seed=1, epoch=2)]
    c = [b["actions"].tolist() for b in batches(data, unroll=8, batch_size=3, seed=1, epoch=3)]
    assert a == b and a != c


def test_lstm_state_resets_at_episode_start():
    torch.manual_seed(0)
    p = Policy(4, ActionSpec(True, 3), hidden_size=16)
    x = torch.randn(6, 1, 4)
    first = torch.tensor([[True], [False], [False], [True], [False], [False]])
    out, _ = p(x, first, p.initial_state(1))
    fresh, _ = p(x[3:], first[3:], p.initial_state(1))
    assert torch.allclose(out[3:], fresh, atol=1e-6)
    no_reset, _ = p(x, torch.zeros_like(first), p.initial_state(1))
    assert not torch.allclose(no_reset[3:], fresh)


def test_continuous_head_squashed_into_bounds_learns():
    """--action_squash bounds: the mean is kept inside any [low, high] box."""
    torch.manual_seed(0)
    spec = ActionSpec(False, 2, (-2.0, 0.0), (2.0, 1.0))
    p = Policy(3, spec, hidden_size=32, lstm=False, batch_norm=True, squash="bounds")
    obs = torch.randn(10, 4, 3)
    target = torch.stack([obs[..., 0].clamp(-1.5, 1.5), torch.sigmoid(obs[..., 1])], -1)
    opt = torch.optim.Adam(p.parameters(), lr=1e-2)
    first = torch.zeros(10, 4, dtype=torch.bool)
    mask = torch.ones(10, 4, dtype=torch.bool)
    losses = []
    for _ in range(150):
        out, _ = p(obs, first)
        loss = p.loss(out, target, mask)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
    p.eval()
    a, _ = p.act(torch.randn(64, 3) * 100, torch.zeros(64, dtype=torch.bool))
    assert (a[:, 0] >= -2).all() and (a[:, 0] <= 2).all() and (a[:, 1] >= 0).all() and (a[:, 1] <= 1).all()


def test_combine_rejects_unknown_mode():
    with pytest.raises(ValueError):
        combine(np.zeros((2, 3)), "max")


def test_fused_lstm_stretches_equal_the_step_by_step_loop():
    torch.manual_seed(1)
    p = Policy(5, ActionSpec(True, 4), hidden_size=12)
    T, B = 9, 3
    x = torch.randn(T, B, 5)
    first = torch.zeros(T, B, dtype=torch.bool)
    first[0] = True
    first[3, 1] = True
    first[6, 0] = first[6, 2] = True
    out, (h, c) = p(x, first, p.initial_state(B))
    # reference: the original's loop, one LSTM step at a time
    feats = p.fc(x.reshape(T * B, -1)).view(T, B, -1)
    state = p.initial_state(B)
    ref = []
    for t in range(T):
        m = (~first[t]).float().view(1, B, 1)
        state = tuple(m * s for s in state)
        o, state = p.core(feats[t : t + 1], state)
        ref.append(o)
    ref = p.head(torch.cat(ref))
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(h, state[0], atol=1e-6)


@pytest.mark.parametrize("mode", ["cat", "diff"])
def test_batches_stack_frozen_features_like_the_precomputed_stack(mode):
    """Features are stacked per batch (each embedding held once); batches equal stacking everything first."""
    rng = np.random.default_rng(0)
    ends = np.array([5, 12, 30])
    n, k = 30, 3
    feats = rng.standard_normal((n, 4)).astype(np.float32)
    lazy = Demonstrations(feats, np.arange(n), episode_starts(ends, n), stack_indices(ends, k), stack_mode=mode)
    eager = Demonstrations(stack_episodes(feats, ends, k, mode), np.arange(n), episode_starts(ends, n))
    assert lazy.obs.nbytes * k == eager.obs.nbytes
    for a, b in zip(batches(lazy, unroll=7, batch_size=2, seed=3, epoch=1),
                    batches(eager, unroll=7, batch_size=2, seed=3, epoch=1)):
        assert a["obs"].shape[-1] == k * 4
        torch.testing.assert_close(a["obs"], b["obs"])
        torch.testing.assert_close(a["actions"], b["actions"])
