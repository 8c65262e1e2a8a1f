"""MetaWorld suite: names, CortexBench's camera / horizon / observation / success settings, the mujoco 3.17 patch."""
import re

import numpy as np
import pytest

import pvr.envs
import pvr.experts
from pvr.errors import PvrError

metaworld = pytest.importorskip("metaworld", reason="metaworld not installed (scripts/bootstrap.sh installs it)")
mujoco = pytest.importorskip("mujoco")
from pvr.envs import metaworld as mw  # noqa: E402
from envtest_util import check_info, checked, roll  # noqa: E402

# CortexBench's camera, as its metaworld fork declares it (suraj-nair-1/metaworld xyz_base.xml:18).
TOP_CAP2_XML = """<camera name="top_cap2" mode='targetbody' target='tablelink' pos='-0.0 0.9 0.6'/>"""
# metaworld 3.1.1 sawyer_xyz_env.py reset_mocap_welds: the weld parameters it writes.
METAWORLD_WELD = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0]
CORTEXBENCH = ["assembly", "bin-picking", "button-press-topdown", "drawer-open", "hammer"]
SMALL = 32


@pytest.fixture
def env():
    e = pvr.envs.make("MetaWorld-button-press-topdown-v3", image_size=SMALL)
    yield e
    e.close()


def test_suite_listed_with_the_cortexbench_examples():
    (info,) = [s for s in pvr.envs.suites() if s.name == "MetaWorld"]
    assert info.works, info.reason
    assert info.default_expert == "metaworld_scripted"
    assert info.examples == [f"MetaWorld-{t}-v3" for t in CORTEXBENCH]


def test_probe_says_why_when_metaworld_cannot_be_imported(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_metaworld(name, *args, **kwargs):
        if name == "metaworld" or name.startswith("metaworld."):
            raise ImportError("No module named 'metaworld'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_metaworld)
    reason = mw._probe()
    assert reason is not None and "metaworld" in reason and "bootstrap" in reason
    with pytest.raises(PvrError, match="cannot run here"):
        pvr.envs.make("MetaWorld-assembly-v3")


def test_every_metaworld_task_resolves_and_cortexbench_names_map_to_v3():
    tasks = [name[:-3] for name in metaworld.ALL_V3_ENVIRONMENTS]
    assert len(tasks) == 50 and set(CORTEXBENCH) <= set(tasks)
    for task in tasks:
        assert pvr.envs.suite_for(f"MetaWorld-{task}-v3").name == "MetaWorld"
        assert mw.parse(f"MetaWorld-{task}-v3") == f"{task}-v3"
    for task in CORTEXBENCH:  # eai-vc supported_envs.py: "<task>-v2-goal-observable"
        assert mw.parse(f"MetaWorld-{task}-v2-goal-observable") == f"{task}-v3"
        assert mw.parse(f"MetaWorld-{task}-v2") == f"{task}-v3"
    with pytest.raises(PvrError, match="Did you mean MetaWorld-assembly-v3"):
        mw.parse("MetaWorld-asembly-v3")
    with pytest.raises(PvrError, match="unknown MetaWorld task"):
        pvr.envs.make("MetaWorld-no-such-task-v3")


def test_top_cap2_camera_matches_cortexbench_xml(env):
    attrs = dict(re.findall(r"(\w+)=['\"]([^'\"]*)['\"]", TOP_CAP2_XML))
    model = env.unwrapped.model
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, attrs["name"])
    assert cam >= 0
    assert model.cam_mode[cam] == mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODY
    assert model.cam_targetbodyid[cam] == mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, attrs["target"])
    assert model.cam_bodyid[cam] == 0  # declared in the world body, as the fork's include does
    np.testing.assert_allclose(model.cam_pos[cam], [float(v) for v in attrs["pos"].split()])
    assert env.unwrapped.mujoco_renderer.camera_id == cam


def test_frames_come_from_top_cap2_at_the_requested_size(env):
    obs, info = env.reset(seed=3)
    assert obs.shape == (SMALL, SMALL, 3) and obs.dtype == np.uint8
    u = env.unwrapped
    # An independent render of the same state from the named camera, fast preset as pvr's.
    renderer = mujoco.Renderer(u.model, height=SMALL, width=SMALL)
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    renderer.update_scene(u.data, camera="top_cap2")
    top = renderer.render().copy()
    renderer.update_scene(u.data, camera="corner")
    corner = renderer.render().copy()
    renderer.close()
    u.mujoco_renderer._get_viewer("rgb_array").make_context_current()
    diff_top = np.abs(obs.astype(int) - top).mean()
    diff_corner = np.abs(obs.astype(int) - corner).mean()
    assert diff_top < 3.0 < diff_corner, (diff_top, diff_corner)


def test_default_size_is_cortexbench_256():
    e = pvr.envs.make("MetaWorld-drawer-open-v3")
    try:
        obs, _ = e.reset(seed=0)
        assert obs.shape == (256, 256, 3) and e.observation_space.shape == (256, 256, 3)
        assert e.unwrapped.max_path_length == 500
    finally:
        e.close()


def test_unknown_camera_is_refused():
    with pytest.raises(PvrError, match="no camera 'nope'.*corner"):
        pvr.envs.make("MetaWorld-assembly-v3", image_size=SMALL, camera_name="nope")


def test_true_state_is_the_goal_observable_observation_and_proprio_its_first_four(env):
    obs, info = env.reset(seed=1)
    assert check_info(info) == 39
    state = info["true_state"]
    np.testing.assert_array_equal(info["proprio"], state[:4])
    assert info["proprio"].dtype == np.float32 and info["proprio"].shape == (4,)
    u = env.unwrapped
    np.testing.assert_allclose(state[:3], u.get_endeff_pos(), atol=1e-5)  # end effector (hand) position
    np.testing.assert_allclose(state[36:39], u._target_pos, atol=1e-5)  # the goal is observed
    assert np.any(state[36:39] != 0)
    _, _, _, _, info = env.step(env.action_space.sample())
    np.testing.assert_array_equal(info["proprio"], info["true_state"][:4])


@pytest.mark.parametrize("task", CORTEXBENCH)
def test_cortexbench_tasks_make_step_and_pass_check_env(task):
    e = pvr.envs.make(f"MetaWorld-{task}-v3", image_size=16)
    try:
        roll(e, (16, 16, 3), steps=3)
        checked(e)
    finally:
        e.close()


def test_each_reset_seed_fixes_the_episode_and_seeds_differ():
    def run(seed):
        e = pvr.envs.make("MetaWorld-assembly-v3", image_size=SMALL)
        try:
            obs, info = e.reset(seed=seed)
            frames, states = [obs], [info["true_state"]]
            for a in np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4):
                obs, _, _, _, info = e.step(a)
                frames.append(obs)
                states.append(info["true_state"])
            return np.stack(frames), np.stack(states)
        finally:
            e.close()

    f0, s0 = run(7)
    f1, s1 = run(7)
    np.testing.assert_array_equal(f0, f1)
    np.testing.assert_array_equal(s0, s1)
    _, s2 = run(8)
    assert not np.allclose(s0[0, 4:], s2[0, 4:])  # object / goal placement follows the seed


def test_reset_with_the_same_seed_replays_on_one_env(env):
    _, a = env.reset(seed=5)
    env.reset(seed=6)
    _, b = env.reset(seed=5)
    np.testing.assert_array_equal(a["true_state"], b["true_state"])


def test_success_is_the_last_steps_metaworld_success():
    # The independent rule (CortexBench: the final step's info['success']).
    def rule(steps):  # steps: per-step metaworld success flags; True where pvr should report success
        return [i == len(steps) - 1 and s for i, s in enumerate(steps)]

    horizon = 100  # the scripted policy presses the button by step ~70 (seed 0) and holds it
    e = pvr.envs.make("MetaWorld-button-press-topdown-v3", image_size=16, max_episode_steps=horizon)
    try:
        expert = pvr.experts.create(None, e)
        obs, info = e.reset(seed=0)
        achieved, reported, truncs = [], [], []
        for _ in range(horizon):
            obs, _, term, trunc, info = e.step(expert.act(obs, info))
            achieved.append(info["goal_achieved"])
            reported.append(info["success"])
            truncs.append(trunc)
            assert not term
        assert truncs == [False] * (horizon - 1) + [True]
        assert any(achieved[:-1]), "the scripted policy should reach the goal before the last step"
        assert reported == rule(achieved) and reported[-1] is True
        with pytest.raises(PvrError, match="reset the env"):
            e.step(e.action_space.sample())
    finally:
        e.close()


def test_goal_achieved_mid_episode_but_not_at_the_end_is_a_failure():
    assert mw.last_step_success(None, 0.0, False, False, {"goal_achieved": True}) is False
    assert mw.last_step_success(None, 0.0, False, True, {"goal_achieved": False}) is False
    assert mw.last_step_success(None, 0.0, False, True, {"goal_achieved": True}) is True


def test_mocap_weld_patch_for_mujoco_317(env, monkeypatch):
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    if mujoco.mjNEQDATA == 11:
        pytest.skip("this mujoco has 11 weld parameters; metaworld works unpatched")
    assert SawyerMocapBase.reset_mocap_welds is mw.reset_mocap_welds
    u = env.unwrapped
    weld = [i for i in range(u.model.neq) if u.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD]
    assert weld
    before = u.model.eq_data.copy()
    u.model.eq_data[weld] = 0.25
    u.reset_mocap_welds()
    for i in weld:
        np.testing.assert_array_equal(u.model.eq_data[i, :11], METAWORLD_WELD)
        np.testing.assert_array_equal(u.model.eq_data[i, 11:], 0.25)  # beyond metaworld's 11: untouched
    u.model.eq_data[:] = before
    # metaworld's own method fails on this mujoco: the reason for the patch
    with pytest.raises(ValueError, match="broadcast"):
        mw.ORIGINAL["reset_mocap_welds"](u)
    # and nothing is patched where mujoco has metaworld's 11 values
    monkeypatch.setattr(mujoco, "mjNEQDATA", 11)
    monkeypatch.setattr(SawyerMocapBase, "reset_mocap_welds", mw.ORIGINAL["reset_mocap_welds"])
    assert mw.patch_mocap_welds() is False
    assert SawyerMocapBase.reset_mocap_welds is mw.ORIGINAL["reset_mocap_welds"]


def test_bootstrap_installs_the_installed_metaworld_and_its_stamp_covers_it(tmp_path):
    """scripts/bootstrap.sh pins metaworld (installed --no-deps) and hashes that pin into its stamp,
    so a venv made before the pin (or with another) reinstalls; this venv has that version."""
    import hashlib
    import importlib.metadata
    import pathlib
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[2]
    script = (root / "scripts" / "bootstrap.sh").read_text()
    (pins,) = re.findall(r"^NO_DEPS=\(([^)]*)\)", script, re.M)
    assert f"metaworld=={importlib.metadata.version('metaworld')}" in pins.split()
    assert re.search(r'pip install .*--no-deps "\$\{NO_DEPS\[@\]\}"', script)
    # The stamp value, computed by the script's own lines, against an independent sha256.
    lines = [ln for ln in script.splitlines() if ln.startswith(("NO_DEPS=", "want="))]
    out = subprocess.run(["bash", "-c", "\n".join(lines + ['echo "$want"'])], cwd=root, capture_output=True,
                         text=True, check=True).stdout.strip()
    blob = (root / "pyproject.toml").read_bytes() + (root / "requirements.lock").read_bytes()
    blob += "".join(f"{p}\n" for p in pins.split()).encode()
    assert out == hashlib.sha256(blob).hexdigest()
