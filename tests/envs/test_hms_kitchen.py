import numpy as np
import pytest

import pvr.envs
from pvr.envs import hms, kitchen
from pvr.errors import PvrError

from envtest_util import checked, roll


@pytest.mark.parametrize("name,state,act", [("HMS-pen-v0", 45, 24), ("HMS-relocate-v0", 39, 30),
                                            ("HMS-door-v0", 39, 28), ("HMS-hammer-v0", 46, 26)])
def test_hms_frames_state_success(name, state, act):
    env = pvr.envs.make(name, image_size=32)
    *_, info = roll(env, (32, 32, 3), steps=2)
    assert info["true_state"].shape == (state,) and env.action_space.shape == (act,)
    assert "goal_achieved" in info and info["goal_achieved_steps"] >= 0
    env.close()


def test_hms_check_env_and_horizon():
    env = pvr.envs.make("HMS-pen", image_size=24)
    assert env.spec.id == "HMS-pen" and env.get_wrapper_attr("_max_episode_steps") == 100  # the original's
    checked(env)
    env.close()


@pytest.mark.parametrize("name,threshold", [("HMS-pen-v0", 20), ("HMS-door-v0", 25)])
def test_hms_success_rule_counts_goal_steps(name, threshold):
    env = pvr.envs.make(name, image_size=16)
    env.reset(seed=0)
    u = env.unwrapped
    real_step = u.step
    script = iter([True] * threshold + [False, True, False])

    def step(action):
        obs, r, term, trunc, info = real_step(action)
        return obs, r, term, trunc, {**info, "success": next(script)}

    u.step = step  # the wrappers look the method up on the instance
    got = [env.step(np.zeros(env.action_space.shape, np.float32))[-1] for _ in range(threshold + 3)]
    assert [i["success"] for i in got] == [False] * (threshold + 1) + [True, True]  # > threshold steps
    assert got[-1]["goal_achieved_steps"] == threshold + 1
    env.close()


def test_hms_default_size_is_256_and_bad_name():
    assert hms.DEFAULT_IMAGE_SIZE == 256
    with pytest.raises(PvrError, match="HMS-pen-v0"):
        pvr.envs.make("HMS-pencil-v0")


def test_kitchen_joint_type_fix_is_needed_and_narrow():
    import mujoco
    from gymnasium_robotics.utils import mujoco_utils

    kitchen.patch_joint_type_compare()
    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><joint name='h' type='hinge'/><geom size='.1'/></body>"
        "<body pos='1 0 0'><freejoint name='f'/><geom size='.1'/></body></worldbody></mujoco>")
    data = mujoco.MjData(model)
    data.qpos[:] = np.arange(model.nq)
    assert kitchen.joint_type_bug()  # mujoco 3.17: mjJNT_HINGE != np.int32(3)
    np.testing.assert_array_equal(mujoco_utils.get_joint_qpos(model, data, "h"), [0])
    np.testing.assert_array_equal(mujoco_utils.get_joint_qpos(model, data, "f"), np.arange(1, 8))
    assert mujoco_utils.get_joint_qvel(model, data, "f").shape == (6,)
    with pytest.raises(ValueError, match="not part of the model"):
        mujoco_utils.get_joint_qpos(model, data, "nope")


def test_kitchen_builds_steps_and_succeeds_when_task_completed():
    env = pvr.envs.make("Kitchen-micro_open", image_size=32)
    *_, info = roll(env, (32, 32, 3), steps=2)
    assert info["true_state"].shape == (59,) and info["success"] is False
    checked(env)
    # open the microwave door by hand: the env completes the task and terminates
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_INDICES

    env.unwrapped.data.qpos[OBS_ELEMENT_INDICES["microwave"]] = -0.75
    *_, term, _, info = env.step(np.zeros(9))
    assert term and info["success"] is True
    env.close()


def test_kitchen_names():
    assert kitchen.parse("Kitchen-slide_cabinet+light_on") == ["slide cabinet", "light switch"]
    with pytest.raises(PvrError, match="Kitchen-microwave"):
        kitchen.parse("Kitchen-dishwasher")
