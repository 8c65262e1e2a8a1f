"""pvr train's learner against the original's (sparisi/pvr_habitat, distributed branch), re-stated here.

Each expected value below is written from the original's code (src/models.py, main_bc.py,
src/arguments.py, submitit_bc.py), not computed by the code under test.
"""
import argparse
import math

import numpy as np
import pytest
import torch
from torch import nn

from pvr.bc import recipes
from pvr.bc.config import TrainConfig, add_arguments, from_namespace
from pvr.bc.policy import ActionSpec, Policy
from pvr.bc.sampler import Demonstrations, episode_starts
from pvr.bc.trainer import eval_epochs, train_epoch


def original_policy(obs_dim: int, action: ActionSpec, **cfg) -> Policy:
    """The policy exactly as `pvr train` builds it from its defaults."""
    c = TrainConfig(env="x", embedding_name="true_state", **cfg).validate()
    return recipes.get("original").policy(obs_dim, action, recipes.get("original").policy_kwargs(c, action))


def assert_orthogonal(w: torch.Tensor, gain: float) -> None:
    w = w.detach().double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(gram, gain ** 2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5, rtol=1e-5)


# -- networks (src/models.py: DiscretePolicy, ContinuousPolicy) -------------------------------------------

def test_continuous_policy_is_256_wide_tanh_with_tanh_gain_and_a_256_lstm():
    torch.manual_seed(0)
    p = original_policy(7, ActionSpec(False, 3, (-1.0,) * 3, (1.0,) * 3))
    kinds = [type(m) for m in p.fc]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh]
    assert (p.fc[0].in_features, p.fc[0].out_features, p.fc[2].out_features) == (7, 256, 256)
    assert (p.core.input_size, p.core.hidden_size, p.core.num_layers) == (256, 256, 2)
    assert (p.head.in_features, p.head.out_features) == (256, 3)
    tanh_gain = 5.0 / 3.0  # torch.nn.init.calculate_gain('tanh')
    assert_orthogonal(p.fc[0].weight, tanh_gain)
    assert_orthogonal(p.fc[2].weight, tanh_gain)
    assert_orthogonal(p.head.weight, 1.0)
    for layer in (p.fc[0], p.fc[2], p.head):
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.equal(p.log_std.detach(), torch.zeros(3))  # init_log_std = 0


def test_discrete_policy_is_1024_wide_relu_with_relu_gain_and_a_1024_lstm():
    torch.manual_seed(0)
    p = original_policy(9, ActionSpec(True, 4))
    assert [type(m) for m in p.fc] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    assert (p.fc[0].out_features, p.fc[2].out_features, p.core.hidden_size, p.core.num_layers) == (1024, 1024, 1024, 2)
    assert_orthogonal(p.fc[0].weight, math.sqrt(2.0))
    assert_orthogonal(p.fc[2].weight, math.sqrt(2.0))
    assert_orthogonal(p.head.weight, 1.0)


def test_batch_norm_sits_before_the_mlp_and_disable_lstm_removes_the_core():
    p = original_policy(5, ActionSpec(True, 2), batch_norm=True, disable_lstm=True)
    assert isinstance(p.fc[0], nn.BatchNorm1d) and p.fc[0].num_features == 5
    assert p.core is None


def test_log_std_is_clamped_from_below_at_minus_3_only():
    p = original_policy(2, ActionSpec(False, 3, (-1.0,) * 3, (1.0,) * 3))
    with torch.no_grad():
        p.log_std.copy_(torch.tensor([-10.0, 0.5, 6.0]))
    torch.testing.assert_close(p.std(), torch.exp(torch.tensor([-3.0, 0.5, 6.0])))


def test_mean_squash_rule_symmetric_vs_asymmetric_bounds():
    out = torch.tensor([[[-3.0, 0.2]], [[0.7, 5.0]]])  # (T=2, B=1, A=2) raw head outputs
    sym = original_policy(1, ActionSpec(False, 2, (-2.0, -0.5), (2.0, 0.5)))
    # high == -low on every dimension: tanh, times the bound
    torch.testing.assert_close(sym.mean_action(out), torch.tanh(out) * torch.tensor([2.0, 0.5]))
    asym = original_policy(1, ActionSpec(False, 2, (-1.0, 0.0), (1.0, 1.0)))
    # any asymmetric dimension: the original leaves the whole mean linear
    torch.testing.assert_close(asym.mean_action(out), out)
    bounds = original_policy(1, ActionSpec(False, 2, (-1.0, 0.0), (1.0, 1.0)), action_squash="bounds")
    expected = torch.tensor([-1.0, 0.0]) + (torch.tanh(out) + 1) / 2 * torch.tensor([2.0, 1.0])
    torch.testing.assert_close(bounds.mean_action(out), expected)


def test_test_time_action_is_the_mean_or_the_argmax():
    torch.manual_seed(0)
    p = original_policy(3, ActionSpec(False, 2, (-1.0, -1.0), (1.0, 1.0))).eval()
    x = torch.randn(4, 3)
    first = torch.ones(4, dtype=torch.bool)
    a, _ = p.act(x, first, p.initial_state(4))
    out, _ = p(x[None], first[None], p.initial_state(4))
    torch.testing.assert_close(a, torch.tanh(out[0]))
    d = original_policy(3, ActionSpec(True, 5)).eval()
    a, _ = d.act(x, first, d.initial_state(4))
    out, _ = d(x[None], first[None], d.initial_state(4))
    assert torch.equal(a, out[0].argmax(-1))


# -- defaults (src/arguments.py, submitit_bc.py) ---------------------------------------------------------

def test_defaults_are_the_originals():
    # unset flags are filled from --recipe (default: original) when the config is validated
    c = TrainConfig(env="x").validate()
    assert (c.batch_size, c.unroll_length, c.epochs, c.learning_rate, c.alpha, c.epsilon, c.momentum,
            c.max_grad_norm, c.seed, c.num_episodes_test, c.frame_skips, c.frame_skip_mode) == \
        (16, 100, 100, 1e-4, 0.99, 1e-5, 0.0, 40.0, 1, 50, 1, "last")


def parse(*argv):
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    return from_namespace(ap.parse_args(["--env", "x", *argv]))


def test_batch_norm_follows_the_sweep_unless_set():
    # submitit_bc.py: batch_norm on for every embedding except true_state
    assert parse("--embedding_name", "resnet50").validate().batch_norm is True
    assert parse("--embedding_name", "true_state").validate().batch_norm is False
    assert parse("--embedding_name", "resnet50", "--no_batch_norm").validate().batch_norm is False
    assert parse("--embedding_name", "true_state", "--batch_norm").validate().batch_norm is True


def test_the_originals_warnings():
    # main_bc.py: the two warnings, word for word
    assert parse("--embedding_name", "resnet50").validate().warnings() == []
    assert parse("--embedding_name", "resnet50", "--no_batch_norm").validate().warnings() == [
        "You are using a perception module without batch normalization."]
    assert parse("--embedding_name", "true_state", "--num_input_frames", "3").validate().warnings() == [
        "You are stacking frames but still using a LSTM."]
    assert parse("--embedding_name", "true_state", "--num_input_frames", "3", "--disable_lstm").validate() \
        .warnings() == []


def test_debug_uses_20_trajectories_and_2_test_episodes_and_keeps_the_epochs():
    c = parse("--debug", "--epochs", "7", "--num_episodes_test", "30").validate()
    assert (c.num_trajectories_train, c.num_episodes_test, c.epochs) == (20, 2, 7)


def test_disable_pretrained_embedding_needs_fine_tuning():
    from pvr.errors import PvrError

    with pytest.raises(PvrError, match="only with --train_embedding"):
        parse("--disable_pretrained_embedding").validate()
    assert parse("--disable_pretrained_embedding", "--train_embedding").validate().disable_pretrained_embedding


# -- schedules (main_bc.py) ------------------------------------------------------------------------------

def test_evaluation_epochs_for_100_epochs_are_the_originals():
    assert eval_epochs(100) == [0, 1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 60, 80, 100]


def is_essential_save(epoch, max_epochs):  # main_bc.py, re-stated
    progress = [0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
    return any(epoch in (np.ceil(p * max_epochs), np.floor(p * max_epochs)) for p in progress)


@pytest.mark.parametrize("epochs", [1, 3, 7, 10, 33, 40, 64, 150, 1000])
def test_evaluation_epochs_match_is_essential_save(epochs):
    # epoch 0 is tested before training; then epoch e+1 whenever is_essential_save(e + 1, E)
    expected = [0] + [e + 1 for e in range(epochs) if is_essential_save(e + 1, epochs)]
    assert eval_epochs(epochs) == expected


def test_eval_every_is_the_alternative():
    assert eval_epochs(100, 30) == [0, 30, 60, 90, 100]


def lrs_seen(cfg: TrainConfig, epochs: int) -> list[list[float]]:
    torch.manual_seed(0)
    n = 60
    data = Demonstrations(np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32), np.zeros(n, dtype=np.int64),
                          episode_starts(np.array([n]), n))
    recipe = recipes.get("original")
    action = ActionSpec(True, 2)
    policy = recipe.policy(3, action, recipe.policy_kwargs(cfg, action))
    opt = recipe.optimizer(list(policy.parameters()), cfg)
    seen: list[list[float]] = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen[-1].append(o.param_groups[0]["lr"]))
    sched, per_update = recipe.scheduler(opt, cfg, 4)
    for epoch in range(1, epochs + 1):
        seen.append([])
        train_epoch(policy, opt, sched, data, cfg, epoch, torch.device("cpu"), per_update=per_update)
    return seen


def test_learning_rate_decays_once_per_epoch():
    cfg = TrainConfig(env="x", embedding_name="true_state", epochs=4, learning_rate=1e-3, hidden_size=8,
                      batch_size=2, unroll_length=10).validate()
    seen = lrs_seen(cfg, 4)
    # LambdaLR(1 - epoch / epochs), stepped after each epoch: epoch index 0..3 trains at lr * (1 - i / 4)
    for i, lrs in enumerate(seen):
        assert len(lrs) > 1 and lrs == pytest.approx([1e-3 * (1 - i / 4)] * len(lrs))


def test_learning_rate_per_update_is_the_alternative():
    cfg = TrainConfig(env="x", embedding_name="true_state", epochs=2, learning_rate=1e-3, hidden_size=8,
                      batch_size=2, unroll_length=10, lr_schedule="update").validate()
    seen = lrs_seen(cfg, 2)
    flat = [x for lrs in seen for x in lrs]
    assert all(a > b for a, b in zip(flat, flat[1:]))
