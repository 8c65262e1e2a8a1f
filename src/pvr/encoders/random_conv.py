"""``random<N>`` (``random`` = ``random5``): a randomly initialised convnet, the original's baseline.

As the original builds it: a stride-2 3×3 conv 3→32, then N−1 applications of
*one* stride-2 3×3 conv 32→32 (the same module repeated, so layers 2..N share
their weights), each followed by ELU; orthogonal init with ReLU gain, zero bias.
Frames go in at their native size with only a uint8 → [0, 1] conversion (no
resize, no normalisation), so the output has 32·⌈H/2^N⌉·⌈W/2^N⌉ values: 128 at
64 px, 288 at 84 px, 2048 at 256 px for ``random5``.

Weights: ``random<N>.tar`` in ``$PVR_MODEL_PATH`` when it is there (the
original's file: ``{"state_dict": ...}`` with keys ``0.*``, ``2.*``, … ``2(N-1).*``,
the repeated layer stored once per use), else drawn from ``seed``. The draw is
the original's: the same sequence of torch RNG calls after ``torch.manual_seed(seed)``
(the original seeded torch with the run's seed right before building it), so
``seed`` reproduces the original's network for that seed.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import ENCODERS, add_encoder_rule, register_encoder
from pvr.errors import PvrError
from pvr.registry import Entry

#: the seed used when none is given: ``pvr train``'s default ``--seed``
DEFAULT_SEED = 1
MAX_LAYERS = 16
#: uint8 → float in [0, 1] and nothing else (the original's ``ConvertImageDtype(torch.float)``)
NATIVE = Preprocess(resize=None, crop=None, scale=255.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def random_convnet(n_layers: int, seed: int = DEFAULT_SEED) -> nn.Sequential:
    """The network, drawn from ``seed`` (bit-identical in every process, whatever its thread count)."""
    # One thread and a private RNG state: the orthogonal init (a QR decomposition)
    # gives the same weights everywhere, so the evaluation process rebuilds
    # exactly the encoder that embedded the data, and the caller's RNG is untouched.
    gen_state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    try:
        first = _conv(3)
        if n_layers == 1:
            return nn.Sequential(first, nn.ELU())
        shared, act = _conv(32), nn.ELU()
        return nn.Sequential(first, nn.ELU(), *[shared, act] * (n_layers - 1))
    finally:
        torch.random.set_rng_state(gen_state)
        torch.set_num_threads(threads)


def _conv(in_ch: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, 32, kernel_size=3, stride=2, padding=1)
    nn.init.orthogonal_(conv.weight, gain=nn.init.calculate_gain("relu"))
    nn.init.zeros_(conv.bias)
    return conv


def filename(n_layers: int) -> str:
    return f"random{n_layers}.tar"


def model_path_file(n_layers: int) -> Path | None:
    """The original's ``random<N>.tar`` in ``$PVR_MODEL_PATH``, if there."""
    p = weights.model_dir() / filename(n_layers)
    return p if p.is_file() else None


def load_file(net: nn.Sequential, path: Path, n_layers: int, name: str) -> None:
    ckpt = weights.load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise PvrError(f"{path} does not hold a {name} convnet: expected {{'state_dict': ...}}")
    expected = {f"{2 * i}.{k}" for i in range(n_layers) for k in ("weight", "bias")}
    if set(state) != expected:
        raise PvrError(f"{path} does not hold a {name} convnet ({n_layers} layers): keys {sorted(state)[:6]}..., "
                       f"expected {sorted(expected)[:6]}...")
    for k in ("weight", "bias"):
        reps = [state[f"{2 * i}.{k}"] for i in range(2, n_layers)]
        if any(not torch.equal(r, state[f"2.{k}"]) for r in reps):
            raise PvrError(f"{path} holds different weights for layers 2..{n_layers}: {name} shares one layer "
                           "(the original's layout); re-save it with `pvr.encoders.create(name).save(path)`")
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise PvrError(f"{path} does not hold a {name} convnet ({n_layers} layers): {e}") from None


def _make(n_layers: int, name: str, seed: int | None = None, path: str | None = None, train: bool = False,
          pretrained: bool = True) -> Encoder:
    # ``pretrained`` is accepted (and meaningless) so that every family takes the same keywords
    seed = DEFAULT_SEED if seed is None else int(seed)
    net = random_convnet(n_layers, seed)
    file = Path(path) if path is not None else model_path_file(n_layers)
    if path is not None and not file.is_file():
        raise PvrError(f"random convnet weights file {file} does not exist; write one with "
                       f"`pvr.encoders.create({name!r}, seed=S).save(path)`")
    # The seed enters the fingerprint through the weights it draws (their digest), so
    # the same network read back from a file shares its cached features.
    source = f"random init, seed {seed}"
    if file is not None:
        load_file(net, file, n_layers, name)
        source = f"file {file}"
    return RandomEncoder(name, net, NATIVE, trainable=train, weights_source=source)


class RandomEncoder(Encoder):
    def save(self, path: str | Path) -> Path:
        """Write the weights in the original's ``random<N>.tar`` layout."""
        from pvr.utils.io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save({"state_dict": self.backbone.state_dict()}, tmp)
        return path


def _meta(n: int) -> dict:
    side = f"{2 ** n}"
    return dict(family="random", weights=f"{filename(n)} in $PVR_MODEL_PATH if there, else seeded init",
                dim=f"32*ceil(H/{side})*ceil(W/{side})", input_size="native", present=lambda: True, seeded=True,
                description=f"{n} stride-2 conv layers (layers 2..{n} share weights), native frame size")


register_encoder("random", **{k: v for k, v in _meta(5).items() if k != "present"})(
    lambda **kw: _make(5, "random", **kw))

_RANDOM_N = re.compile(r"^random(\d+)$")


def _rule(name: str) -> Entry | None:
    m = _RANDOM_N.match(name)
    if not m:
        return None
    n = int(m.group(1))
    if not 1 <= n <= MAX_LAYERS:
        raise PvrError(f"{name}: the random convnet takes 1 to {MAX_LAYERS} layers, e.g. random5")
    return Entry(name, lambda **kw: _make(n, name, **kw), _meta(n))


add_encoder_rule(_rule)
assert "random" in ENCODERS.names()
