"""Habitat ImageNav: ``HabitatImageNav-<scene>``, the paper's task on habitat-sim and Replica scenes.

For users who have habitat-sim (it cannot be installed on the machines pvr is
developed on: see the suite's ``works``/``reason`` in ``pvr envs``). The task logic
is :class:`pvr.envs.navtask.ImageNavEnv`, shared with (and tested on) ``ImageNav-*``;
this module is only the simulator side, written against habitat-sim's API:

- scene: ``$PVR_HABITAT_SCENES/<scene>/habitat/mesh_semantic.ply`` (the Replica
  layout; default root ``~/data/replica``), or ``<root>/<scene>.glb``;
  its navmesh is loaded by habitat-sim from beside the mesh;
- the original's sensor and actions: RGB (and depth) 64×64, HFOV 79°, camera at
  0.88 m, ``move_forward`` 0.25 m, ``turn_left`` / ``turn_right`` 10°;
- ``pathfinder.get_random_navigable_point`` for starts and goals (any island, as
  habitat-lab's ``sample_navigable_point``; the task keeps starts with a path on an
  island of radius >= 1.5 m, ``pathfinder.island_radius``), ``get_sensor_observations``
  at a pose for the goal view, its depth for the optional informative-view test
  (median depth of the centre),
  ``ShortestPath`` / ``find_path`` for geodesic distances and paths, and
  ``habitat_sim.nav.GreedyGeodesicFollower`` for the expert
  (:meth:`HabitatBackend.follower_action`).

Ground-plane positions are (x, z); the height y is taken from the navmesh (a sampled
point keeps its own). Headings cross the backend interface in the task's convention
(MiniWorld's, see :mod:`pvr.envs.navtask`): the simulator's yaw is heading - pi/2,
and ``true_state`` carries the simulator's own position and (w, x, y, z) rotation.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.envs import navtask
from pvr.envs.registry import register_suite
from pvr.envs.render import image_hw
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "HabitatImageNav"
PREFIX = "HabitatImageNav-"
DEFAULT_IMAGE_SIZE = 64
REPLICA_SCENES = ["apartment_0", "apartment_1", "apartment_2", "frl_apartment_0", "frl_apartment_1",
                  "frl_apartment_2", "frl_apartment_3", "frl_apartment_4", "frl_apartment_5", "office_0", "office_1",
                  "office_2", "office_3", "office_4", "room_0", "room_1", "room_2", "hotel_0"]
WHY_NOT = ("habitat-sim is not importable here. PyPI's only habitat-sim file is a macOS arm64 wheel; the "
           "community habitat-sim-uv-wheels-experimental 0.2.2a2 is cp313-only, needs glibc 2.38 and a "
           "'magnum' module no package provides. Install habitat-sim from conda (aihabitat channel) "
           "and the Replica scenes under $PVR_HABITAT_SCENES to use this suite; ImageNav-* is the same task "
           "on MiniWorld")


def _probe() -> str | None:
    try:
        import habitat_sim  # noqa: F401
    except Exception as exc:
        return f"{WHY_NOT} (import error: {type(exc).__name__}: {exc})"
    return None


def scene_root() -> Path:
    return Path(os.environ.get("PVR_HABITAT_SCENES", "~/data/replica")).expanduser()


def scene_path(scene: str) -> Path:
    root = scene_root()
    candidates = [root / scene / "habitat" / "mesh_semantic.ply", root / scene / "mesh.ply", root / f"{scene}.glb"]
    for path in candidates:
        if path.exists():
            return path
    raise PvrError(f"Habitat scene {scene!r} not found; looked for {', '.join(map(str, candidates))}. "
                   "Put the Replica dataset there or set PVR_HABITAT_SCENES.")


def _key(pos) -> tuple[float, float]:
    return round(float(pos[0]), 4), round(float(pos[-1]), 4)


def rotation_wxyz(rotation) -> np.ndarray:
    """(w, x, y, z) of an agent rotation: a numpy-quaternion (what ``AgentState.rotation`` holds, and what
    the original's ``quaternion.as_float_array`` reads) or 4 numbers already in that order."""
    if all(hasattr(rotation, k) for k in "wxyz"):
        return np.array([rotation.w, rotation.x, rotation.y, rotation.z], float)
    return np.asarray(rotation, float).reshape(4)


def coeffs_xyzw(heading: float) -> list[float]:
    """habitat-sim's coefficient order (x, y, z, w) of the rotation for a task heading (the original
    writes goal and start rotations this way: [0, sin(yaw / 2), 0, cos(yaw / 2)])."""
    w, x, y, z = navtask.quat_wxyz_from_heading(heading)
    return [float(x), float(y), float(z), float(w)]


class HabitatBackend(navtask.NavBackend):
    """habitat-sim as a :class:`~pvr.envs.navtask.NavBackend`."""

    def __init__(self, scene: str, hw: tuple[int, int], *, forward_step: float = 0.25, turn_angle: float = 10.0,
                 hfov: float = 79.0, camera_height: float = 0.88, gpu_device_id: int = 0):
        import habitat_sim

        self.hs = habitat_sim
        self.forward_step, self.turn_angle_deg = forward_step, turn_angle
        sim_cfg = habitat_sim.SimulatorConfiguration()
        sim_cfg.scene_id = str(scene_path(scene))
        sim_cfg.gpu_device_id = gpu_device_id
        sensors = []
        for uuid, kind in (("rgb", habitat_sim.SensorType.COLOR), ("depth", habitat_sim.SensorType.DEPTH)):
            spec = habitat_sim.CameraSensorSpec()
            spec.uuid, spec.sensor_type = uuid, kind
            spec.resolution = [hw[0], hw[1]]
            spec.position = [0.0, camera_height, 0.0]
            spec.hfov = hfov
            sensors.append(spec)
        agent_cfg = habitat_sim.agent.AgentConfiguration()
        agent_cfg.sensor_specifications = sensors
        act = habitat_sim.agent.ActionSpec
        amount = habitat_sim.agent.ActuationSpec
        agent_cfg.action_space = {
            "move_forward": act("move_forward", amount(amount=forward_step)),
            "turn_left": act("turn_left", amount(amount=turn_angle)),
            "turn_right": act("turn_right", amount(amount=turn_angle)),
        }
        self.sim = habitat_sim.Simulator(habitat_sim.Configuration(sim_cfg, [agent_cfg]))
        self.agent = self.sim.get_agent(0)
        self.goal3 = np.zeros(3)
        self._points: dict[tuple[float, float], np.ndarray] = {}  # this episode's sampled 3-D points
        self._follower = None

    # conversions ------------------------------------------------------------------------------
    def point3(self, pos: np.ndarray) -> np.ndarray:
        """The navmesh point of a ground-plane position: a sampled point's own height (several floors
        share (x, z)), else the agent's height, snapped to the navmesh."""
        key = _key(pos)
        if key in self._points:
            return self._points[key].copy()
        state = self.agent.get_state()
        p = np.array([pos[0], float(np.asarray(state.position)[1]), pos[1]], np.float32)
        return np.asarray(self.sim.pathfinder.snap_point(p), float)

    def _state(self, pos: np.ndarray, heading: float):
        from habitat_sim.utils.common import quat_from_coeffs

        state = self.hs.AgentState()
        state.position = self.point3(pos).astype(np.float32)
        state.rotation = quat_from_coeffs(coeffs_xyzw(heading))
        return state

    # NavBackend ---------------------------------------------------------------------------------
    def new_episode(self, rng: np.random.Generator) -> None:
        self.sim.pathfinder.seed(int(rng.integers(2**31 - 1)))
        self._points.clear()

    def sample_navigable(self, rng: np.random.Generator) -> np.ndarray:
        """habitat-lab's ``sample_navigable_point`` (any island, as the original; starts on islands under
        1.5 m are dropped by the task)."""
        p = np.asarray(self.sim.pathfinder.get_random_navigable_point(), float)
        self._points[_key(p[[0, 2]])] = p
        return np.array([p[0], p[2]])

    def island_radius(self, pos: np.ndarray) -> float:
        pf = self.sim.pathfinder
        if not hasattr(pf, "island_radius"):  # habitat-sim before islands were exposed
            return math.inf
        return float(pf.island_radius(self.point3(pos).astype(np.float32)))

    def set_goal(self, goal: np.ndarray) -> None:
        self.goal3 = self.point3(goal).astype(np.float32)
        self._follower = None

    def _path(self, pos: np.ndarray):
        path = self.hs.ShortestPath()
        path.requested_start = self.point3(pos).astype(np.float32)
        path.requested_end = self.goal3
        found = self.sim.pathfinder.find_path(path)
        return found, path

    def geodesic_distance(self, pos: np.ndarray) -> float:
        found, path = self._path(pos)
        return float(path.geodesic_distance) if found else math.inf

    def shortest_path(self, pos: np.ndarray) -> np.ndarray:
        found, path = self._path(pos)
        if not found:
            raise PvrError("no path: the position is not connected to the goal")
        return np.array([[p[0], p[2]] for p in path.points], float)

    def _observe_at(self, pos: np.ndarray, heading: float) -> dict:
        saved = self.agent.get_state()
        self.agent.set_state(self._state(pos, heading))
        obs = self.sim.get_sensor_observations()
        self.agent.set_state(saved)
        return obs

    def goal_clearance(self, pos: np.ndarray, heading: float) -> float:
        depth = np.asarray(self._observe_at(pos, heading)["depth"], float)
        h, w = depth.shape[:2]
        return float(np.median(depth[h // 3: 2 * h // 3, w // 3: 2 * w // 3]))

    def render_at(self, pos: np.ndarray, heading: float) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(self._observe_at(pos, heading)["rgb"])[..., :3], np.uint8)

    def set_agent(self, pos: np.ndarray, heading: float) -> None:
        self.agent.set_state(self._state(pos, heading))

    def agent_pose(self) -> tuple[np.ndarray, float]:
        state = self.agent.get_state()
        return np.array([state.position[0], state.position[2]], float), navtask.heading_from_quat_wxyz(
            rotation_wxyz(state.rotation))

    def agent_pose3(self) -> tuple[np.ndarray, np.ndarray]:
        state = self.agent.get_state()
        return np.asarray(state.position, float), rotation_wxyz(state.rotation)

    def act(self, action: int) -> None:
        self.sim.step(("move_forward", "turn_left", "turn_right")[action])

    def render(self) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(self.sim.get_sensor_observations()["rgb"])[..., :3], np.uint8)

    def follower_action(self, goal_radius: float = 0.2) -> int | None:
        """The geodesic shortest-path follower's next action (None when it would STOP: at the goal)."""
        if self._follower is None:
            self._follower = self.hs.nav.GreedyGeodesicFollower(
                self.sim.pathfinder, self.agent, goal_radius=goal_radius, stop_key=None,
                forward_key="move_forward", left_key="turn_left", right_key="turn_right")
        key = self._follower.next_action_along(self.goal3)
        return None if key is None else ("move_forward", "turn_left", "turn_right").index(key)

    def close(self) -> None:
        self.sim.close()


def make_habitat_imagenav(name: str, *, image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
                          forward_step: float = 0.25, turn_angle: float = 10.0, hfov: float = 79.0,
                          **kwargs: Any) -> gym.Env:
    """Build ``HabitatImageNav-<Replica scene>``; task keyword arguments as for ``ImageNav-*``."""
    scene = name[len(PREFIX):]
    hw = image_hw(image_size)
    backend = HabitatBackend(scene, hw, forward_step=forward_step, turn_angle=turn_angle, hfov=hfov)
    env = navtask.make_task_env(backend, hw, scene=scene, **kwargs)
    return InfoWrapper(env, navtask.true_state, navtask.success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "HabitatImageNav-*",
    make_habitat_imagenav,
    description="image-goal navigation on habitat-sim + Replica (same task as ImageNav-*)",
    examples=[f"HabitatImageNav-{s}" for s in ("apartment_0", "frl_apartment_0", "room_0", "office_0", "hotel_0")],
    image_size=f"{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} (x2 views stacked: H, W, 6)",
    default_expert="shortest_path",
    probe=_probe,
    spaces="obs (64, 64, 6) uint8 = current view + goal view; action Discrete(3) forward/left/right",
)
