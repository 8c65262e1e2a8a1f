"""``random`` / ``random<N>``: a randomly initialised convnet, the original's baseline.

N stride-2 3×3 conv layers of 32 channels with ELU, orthogonal init (ReLU gain),
zero bias; ``random`` is ``random5``. Reproducible from ``seed``; ``save`` and
``path=`` write and read the weights as a file (``{"state_dict": ...}``, the
original's ``random<N>.tar`` layout).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import ENCODERS, add_encoder_rule, register_encoder
from pvr.errors import PvrError
from pvr.registry import Entry


def random_convnet(n_layers: int, seed: int = 0) -> nn.Sequential:
    # One thread and a private seed: the orthogonal init (a QR decomposition) gives
    # bit-identical weights in every process, whatever its thread count, so the
    # evaluation process rebuilds exactly the encoder that embedded the data.
    gen_state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    try:
        layers: list[nn.Module] = []
        in_ch = 3
        for _ in range(n_layers):
            conv = nn.Conv2d(in_ch, 32, kernel_size=3, stride=2, padding=1)
            nn.init.orthogonal_(conv.weight, gain=nn.init.calculate_gain("relu"))
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ELU()]
            in_ch = 32
        return nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(gen_state)
        torch.set_num_threads(threads)


def _make(n_layers: int, name: str, seed: int = 0, path: str | None = None, train: bool = False,
          pretrained: bool = True) -> Encoder:
    # ``pretrained`` is accepted (and meaningless) so that every family takes the same keywords
    net = random_convnet(n_layers, seed)
    source = f"random init, seed {seed}"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise PvrError(f"random convnet weights file {p} does not exist; write one with "
                           f"`pvr.encoders.create({name!r}, seed=S).save(path)`")
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise PvrError(f"{p} does not hold a {name} convnet ({n_layers} layers): {e}") from None
        source = f"file {p}"
    return RandomEncoder(name, net, Preprocess(), trainable=train, weights_source=source)


class RandomEncoder(Encoder):
    def save(self, path: str | Path) -> Path:
        from pvr.utils.io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save({"state_dict": self.backbone.state_dict()}, tmp)
        return path


register_encoder("random", family="random", weights="none (seeded init)", dim=1568, input_size=224,
                 description="5 stride-2 conv layers, 32 ch, ELU, orthogonal init")(
    lambda **kw: _make(5, "random", **kw))

_RANDOM_N = re.compile(r"^random(\d+)$")


def _rule(name: str) -> Entry | None:
    m = _RANDOM_N.match(name)
    if not m:
        return None
    n = int(m.group(1))
    if not 1 <= n <= 8:
        raise PvrError(f"{name}: the random convnet takes 1 to 8 layers (224 px input halves each layer)")
    side = -(-224 // 2**n)
    return Entry(name, lambda **kw: _make(n, name, **kw),
                 dict(family="random", weights="none (seeded init)", dim=32 * side * side, input_size=224,
                      present=lambda: True, description=f"{n} stride-2 conv layers"))


add_encoder_rule(_rule)
assert "random" in ENCODERS.names()
