import gc

import pytest

import mujoco
import numpy as np

import pvr.envs
from pvr.envs.render import image_hw, mujoco_renderer_of, resize

EXPECTED = {"MiniGrid", "Gymnasium", "Atari", "DMC", "HMS", "Kitchen", "ImageNav", "HabitatImageNav"}


def test_fast_preset_is_default_and_can_be_turned_off():
    fast = pvr.envs.make("HalfCheetah-v5", image_size=32)
    slow = pvr.envs.make("HalfCheetah-v5", image_size=32, fast_render=False)
    f, _ = fast.reset(seed=0)
    s, _ = slow.reset(seed=0)
    scn = mujoco_renderer_of(fast).viewer.scn
    assert scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] == 0 and scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] == 0
    assert fast.unwrapped.model.vis.quality.offsamples == 0
    assert slow.unwrapped.model.vis.quality.offsamples > 0
    assert f.max() > 0 and s.max() > 0 and not np.array_equal(f, s)  # same state, different look
    np.testing.assert_array_equal(fast.step(np.zeros(6))[-1]["true_state"], slow.step(np.zeros(6))[-1]["true_state"])
    fast.close(), slow.close()


def test_dmc_fast_preset():
    env = pvr.envs.make("DMC-cartpole-swingup", image_size=16)
    r = env.unwrapped._renderer._renderer
    assert r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] == 0
    assert env.unwrapped.physics.model.vis.quality.offsamples == 0
    env.close()


def test_many_mujoco_envs_in_one_process_render_their_own_frames():
    # Several live envs (batched evaluation) and envs dropped while others live must not
    # render black: each frame is drawn in its own OpenGL context.
    a = pvr.envs.make("HMS-door-v0", image_size=16)
    b = pvr.envs.make("HMS-door-v0", image_size=16)
    fa, fb = a.reset(seed=0)[0], b.reset(seed=0)[0]
    assert fa.max() > 0 and np.array_equal(fa, fb)
    a.close()
    del a
    gc.collect()
    c = pvr.envs.make("HMS-door-v0", image_size=16)
    assert c.reset(seed=0)[0].max() > 0 and b.step(np.zeros(28, np.float32))[0].max() > 0
    b.close(), c.close()


def test_image_size_and_resize():
    assert image_hw(84) == (84, 84) and image_hw((48, 64)) == (48, 64)
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    out = resize(frame, (4, 6))
    assert out is not frame and np.array_equal(out, frame)
    assert resize(frame, (8, 8)).shape == (8, 8, 3)


def test_every_suite_listed_with_examples_spaces_size_and_status():
    suites = {s.name: s for s in pvr.envs.suites()}
    assert set(suites) >= EXPECTED
    for name in EXPECTED:
        s = suites[name]
        assert s.examples and s.image_size and s.description
        if name != "MiniGrid":
            assert s.spaces
        assert s.works or s.reason
        for example in s.examples:
            assert pvr.envs.suite_for(example).name == name
    for name in EXPECTED - {"HabitatImageNav"}:
        assert suites[name].works, suites[name].reason
    assert "256" in suites["HMS"].image_size and "84" in suites["DMC"].image_size


def test_encoders_load_after_gl_envs_exist():
    """Loading triton (torch._dynamo: torchvision.models, timm, open_clip) after a Mesa EGL context exists
    segfaulted the process; pvr.envs loads it first (pvr.headless.preload_triton)."""
    import subprocess
    import sys

    pytest.importorskip("mujoco")
    code = (
        "import pvr.envs\n"
        "env = pvr.envs.make('DMC-cartpole-swingup', image_size=16)\n"
        "obs, _ = env.reset(seed=0)\n"
        "import torch._dynamo, torchvision.models\n"
        "obs2, *_ = env.step(env.action_space.sample())\n"
        "assert obs.std() > 0 and obs2.std() > 0\n"
        "env.close()\n"
        "print('survived')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "survived" in r.stdout, (r.returncode, r.stderr[-2000:])
