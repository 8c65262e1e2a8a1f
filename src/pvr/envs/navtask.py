"""Image-goal navigation, the task logic shared by ``ImageNav-*`` (MiniWorld) and ``HabitatImageNav-*``.

The paper's Habitat task (the original's ``HabitatNavigationWrapper`` over habitat-lab's
``NavRLEnv``) without its simulator. The agent sees its current view and a view
taken at the goal pose, stacked on channels (H, W, 6) uint8 — current first, goal
last — and acts with 0 = forward, 1 = turn left, 2 = turn right (Habitat's actions
without STOP). Defaults are the original's rules:

- success: the *geodesic* distance to the goal is ``< success_radius`` = 0.2 m; the
  episode terminates on success (habitat-lab checks success every step, STOP or
  not) and is truncated after ``max_steps`` = 500;
- reward: ``slack_reward`` (-0.01) + (previous geodesic - current geodesic)
  + ``success_reward`` (2.5) on success, not normalised;
- goals: any navigable point, heading uniform in (-pi, pi);
- starts: geodesic distance to the goal in [1, 30] m, same floor (height gap
  <= 0.5 m), on an island of radius >= 1.5 m; a start whose geodesic / Euclidean
  ratio is below 1.1 is kept only with probability 20 (ratio - 0.98)^2 (Habitat's
  rejection of straight-line episodes); 100 start tries per goal, 100 goals;
- ``true_state``: 12 float64 values, Habitat's layout: agent position (x, y, z),
  agent rotation quaternion (w, x, y, z), goal position (x, y, z), scene id (index
  of the scene kind in :data:`SCENE_KINDS`, -1 for other kinds) and scene number
  (the name's trailing ``_<n>``, -1 if none).

Keyword arguments restore pvr's earlier rules (see :class:`ImageNavEnv`).

Headings: a backend reports the agent's heading ``h`` in one convention — it faces
(cos h, -sin h) in the (x, z) ground plane and turning left increases h
(MiniWorld's). Habitat's yaw ``theta`` (rotation about +y of the camera's default
-z forward, so it faces (-sin theta, -cos theta)) is ``h - pi/2``:
:func:`habitat_yaw`, :func:`quat_wxyz_from_heading`, :func:`heading_from_quat_wxyz`.

A simulator plugs in through :class:`NavBackend`; experts use the env's
:meth:`ImageNavEnv.geodesic_distance` and :meth:`ImageNavEnv.shortest_path`.
"""
from __future__ import annotations

import math
import re
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pvr.errors import PvrError

FORWARD, LEFT, RIGHT = 0, 1, 2
ACTION_NAMES = ("forward", "turn_left", "turn_right")
SUCCESS_REWARD = 2.5  # habitat-lab RL.SUCCESS_REWARD
SLACK_REWARD = -0.01  # habitat-lab RL.SLACK_REWARD
SCENE_KINDS = ("apartment", "frl_apartment", "room", "office", "hotel")  # the original's scene ids, in order
REWARDS = ("habitat", "habitat_normalised", "progress")
SUCCESS_MEASURES = ("geodesic", "euclidean")
STATE_LAYOUTS = ("habitat", "planar")


# -- heading conventions -----------------------------------------------------------------------------
def habitat_yaw(heading: float) -> float:
    """Habitat's rotation angle about +y for a task heading (see module docstring)."""
    return float(heading) - math.pi / 2


def quat_wxyz_from_heading(heading: float) -> np.ndarray:
    """The agent's rotation as Habitat stores it, (w, x, y, z): a rotation of :func:`habitat_yaw` about +y."""
    half = habitat_yaw(heading) / 2
    return np.array([math.cos(half), 0.0, math.sin(half), 0.0])


def heading_from_quat_wxyz(q) -> float:
    """The task heading of a camera whose rotation is ``q`` = (w, x, y, z): from where it turns -z to."""
    w, x, y, z = (float(v) for v in q)
    # Third column of the rotation matrix (the image of +z), negated: the forward vector.
    fx = -(2 * (x * z + w * y))
    fz = -(1 - 2 * (x * x + y * y))
    return math.atan2(-fz, fx)


def scene_ids(scene: str) -> tuple[float, float]:
    """(scene id, scene number) of the original's ``true_state``: ``frl_apartment_3`` -> (1, 3)."""
    m = re.fullmatch(r"(.*?)_(\d+)", scene)
    kind, number = (m.group(1), float(m.group(2))) if m else (scene, -1.0)
    return (float(SCENE_KINDS.index(kind)) if kind in SCENE_KINDS else -1.0), number


def start_ratio_keep_probability(ratio: float) -> float:
    """Habitat's probability of keeping a start whose geodesic / Euclidean ratio is below the threshold."""
    return 20.0 * (ratio - 0.98) ** 2


class NavBackend:
    """What the task needs from a simulator. Positions are (x, z) ground-plane arrays, headings radians
    in the task convention (module docstring)."""

    forward_step: float
    turn_angle_deg: float

    def new_episode(self, rng: np.random.Generator) -> None:
        """Called at each reset before sampling (regenerate/reload the scene if needed)."""

    def sample_navigable(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def point3(self, pos: np.ndarray) -> np.ndarray:
        """The 3-D point (x, y, z) of a ground-plane position (y: the floor height; 0 on a flat scene)."""
        return np.array([pos[0], 0.0, pos[1]], float)

    def island_radius(self, pos: np.ndarray) -> float:
        """Radius of the navigable island holding ``pos`` (Habitat drops starts on islands under 1.5 m)."""
        return math.inf

    def set_goal(self, goal: np.ndarray) -> None:
        """Prepare geodesic queries towards ``goal`` (e.g. a distance field)."""

    def geodesic_distance(self, pos: np.ndarray) -> float:
        """Shortest-path length from ``pos`` to the current goal (inf if unreachable)."""
        raise NotImplementedError

    def shortest_path(self, pos: np.ndarray) -> np.ndarray:
        """Waypoints (N, 2) from ``pos`` to the current goal, goal last."""
        raise NotImplementedError

    def goal_clearance(self, pos: np.ndarray, heading: float) -> float:
        """Free distance straight ahead of a camera at (pos, heading), metres."""
        raise NotImplementedError

    def render_at(self, pos: np.ndarray, heading: float) -> np.ndarray:
        """The RGB view (H, W, 3) uint8 of a camera at (pos, heading); the agent does not move."""
        raise NotImplementedError

    def set_agent(self, pos: np.ndarray, heading: float) -> None:
        raise NotImplementedError

    def agent_pose(self) -> tuple[np.ndarray, float]:
        raise NotImplementedError

    def agent_pose3(self) -> tuple[np.ndarray, np.ndarray]:
        """The agent's 3-D position (x, y, z) and rotation quaternion (w, x, y, z), Habitat's convention."""
        pos, heading = self.agent_pose()
        return self.point3(pos), quat_wxyz_from_heading(heading)

    def act(self, action: int) -> None:
        """Apply forward / turn left / turn right (with the simulator's collision handling)."""
        raise NotImplementedError

    def render(self) -> np.ndarray:
        """The agent's current view."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise PvrError(f"ImageNav {name}={value!r} is not one of {', '.join(allowed)}")
    return value


class ImageNavEnv(gym.Env):
    """Image-goal navigation on any :class:`NavBackend` (see module docstring).

    Keyword arguments (defaults = the original's; the values in brackets restore pvr's
    earlier rules): ``success_radius`` 0.2 [0.5], ``success_measure`` "geodesic"
    ["euclidean"]; ``reward`` "habitat" ["progress": progress / 2.5 + 1 on success;
    "habitat_normalised": Habitat's reward / 2.5 as the original's ``main`` branch],
    ``slack_reward``, ``success_reward``; ``min_goal_depth`` 0 [1.5: goal headings with at
    least that much free view]; ``min_start_distance`` 1, ``max_start_distance`` 30 [inf],
    ``geodesic_to_euclid_ratio`` 1.1 [0: no ratio test], ``max_floor_gap`` 0.5,
    ``min_island_radius`` 1.5, ``start_tries`` 100, ``goal_tries`` 100;
    ``true_state_layout`` "habitat" ["planar": 8 values (x, z, cos h, sin h, goal x, goal z,
    cos, sin goal heading)]; ``max_steps`` 500.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, backend: NavBackend, hw: tuple[int, int], *, scene: str, max_steps: int = 500,
                 success_radius: float = 0.2, success_measure: str = "geodesic", reward: str = "habitat",
                 slack_reward: float = SLACK_REWARD, success_reward: float = SUCCESS_REWARD,
                 min_goal_depth: float = 0.0, min_start_distance: float = 1.0, max_start_distance: float = 30.0,
                 geodesic_to_euclid_ratio: float = 1.1, max_floor_gap: float = 0.5, min_island_radius: float = 1.5,
                 start_tries: int = 100, goal_tries: int = 100, true_state_layout: str = "habitat"):
        self.backend = backend
        self.scene = scene
        self.hw = tuple(hw)
        self.max_steps = int(max_steps)
        self.success_radius = float(success_radius)
        self.success_measure = _choice("success_measure", success_measure, SUCCESS_MEASURES)
        self.reward_mode = _choice("reward", reward, REWARDS)
        self.slack_reward, self.success_reward = float(slack_reward), float(success_reward)
        self.min_goal_depth = float(min_goal_depth)
        self.min_start_distance, self.max_start_distance = float(min_start_distance), float(max_start_distance)
        self.geodesic_to_euclid_ratio = float(geodesic_to_euclid_ratio)
        self.max_floor_gap, self.min_island_radius = float(max_floor_gap), float(min_island_radius)
        self.start_tries, self.goal_tries = int(start_tries), int(goal_tries)
        self.true_state_layout = _choice("true_state_layout", true_state_layout, STATE_LAYOUTS)
        if self.start_tries < 1 or self.goal_tries < 1:
            raise PvrError("ImageNav start_tries and goal_tries must be at least 1")
        self.scene_id, self.scene_number = scene_ids(scene)
        self.action_space = spaces.Discrete(3)
        self.observation_space = spaces.Box(0, 255, (*self.hw, 6), np.uint8)
        self.render_mode = "rgb_array"
        self.goal = np.zeros(2)
        self.goal_heading = 0.0
        self.goal_view = np.zeros((*self.hw, 3), np.uint8)
        self.steps = 0
        self._dist = 0.0
        self._frame = np.zeros((*self.hw, 3), np.uint8)

    # -- helpers for experts ----------------------------------------------------
    def geodesic_distance(self, pos: np.ndarray | None = None) -> float:
        """Shortest-path distance (m) from ``pos`` (default: the agent) to the goal."""
        return float(self.backend.geodesic_distance(self.backend.agent_pose()[0] if pos is None else np.asarray(pos)))

    def shortest_path(self, pos: np.ndarray | None = None) -> np.ndarray:
        """Waypoints (N, 2) of a shortest path from ``pos`` (default: the agent) to the goal."""
        return self.backend.shortest_path(self.backend.agent_pose()[0] if pos is None else np.asarray(pos))

    def agent_pose(self) -> tuple[np.ndarray, float]:
        return self.backend.agent_pose()

    # -- episode ------------------------------------------------------------------
    def _goal_heading(self, goal: np.ndarray) -> float | None:
        rng = self.np_random
        if self.min_goal_depth <= 0:
            return float(rng.uniform(-math.pi, math.pi))
        headings = rng.uniform(-math.pi, math.pi, size=8)
        clear = [h for h in headings if self.backend.goal_clearance(goal, h) >= self.min_goal_depth]
        return float(clear[0]) if clear else None

    def start_is_compatible(self, start: np.ndarray) -> bool:
        """Habitat's ``is_compatible_episode`` for a start towards the current goal (draws from np_random)."""
        s3, t3 = self.backend.point3(start), self.backend.point3(self.goal)
        if abs(s3[1] - t3[1]) > self.max_floor_gap:
            return False
        d = self.backend.geodesic_distance(start)
        if not math.isfinite(d) or not self.min_start_distance <= d <= self.max_start_distance:
            return False
        euclid = float(np.linalg.norm(s3 - t3))
        ratio = d / euclid if euclid > 0 else math.inf
        if ratio < self.geodesic_to_euclid_ratio and \
                self.np_random.random() > start_ratio_keep_probability(ratio):
            return False
        return self.backend.island_radius(start) >= self.min_island_radius

    def _sample_episode(self) -> None:
        rng = self.np_random
        for _ in range(self.goal_tries):
            goal = np.asarray(self.backend.sample_navigable(rng), float)
            heading = self._goal_heading(goal)
            if heading is None:
                continue
            self.goal, self.goal_heading = goal, heading
            self.backend.set_goal(self.goal)
            for _ in range(self.start_tries):
                start = np.asarray(self.backend.sample_navigable(rng), float)
                if self.start_is_compatible(start):
                    self.goal_view = self.backend.render_at(self.goal, self.goal_heading)
                    self.backend.set_agent(start, float(rng.uniform(-math.pi, math.pi)))
                    return
        raise PvrError(f"scene {self.scene!r}: no goal and start found in {self.goal_tries} goals x "
                       f"{self.start_tries} starts (geodesic {self.min_start_distance}-{self.max_start_distance} m, "
                       f"min_goal_depth {self.min_goal_depth}); lower min_start_distance or min_goal_depth")

    def _obs(self) -> np.ndarray:
        self._frame = self.backend.render()
        return np.concatenate([self._frame, self.goal_view], axis=-1)

    def true_state(self) -> np.ndarray:
        """The agent and goal state (module docstring), float64."""
        if self.true_state_layout == "planar":
            pos, heading = self.backend.agent_pose()
            return np.array([pos[0], pos[1], math.cos(heading), math.sin(heading), self.goal[0], self.goal[1],
                             math.cos(self.goal_heading), math.sin(self.goal_heading)], np.float64)
        pos3, quat = self.backend.agent_pose3()
        return np.concatenate([np.asarray(pos3, float), np.asarray(quat, float), self.backend.point3(self.goal),
                               [self.scene_id, self.scene_number]]).astype(np.float64)

    def euclidean_distance(self) -> float:
        return float(np.linalg.norm(self.backend.agent_pose()[0] - self.goal))

    def distance_to_goal(self) -> float:
        """The distance the success rule reads (``success_measure``)."""
        return self.geodesic_distance() if self.success_measure == "geodesic" else self.euclidean_distance()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.backend.new_episode(self.np_random)
        self._sample_episode()
        self.steps = 0
        self._dist = self.geodesic_distance()
        return self._obs(), {"geodesic_distance": self._dist, "goal_position": self.goal.copy()}

    def _reward(self, progress: float, success: bool) -> float:
        if self.reward_mode == "progress":
            return progress / SUCCESS_REWARD + (1.0 if success else 0.0)
        reward = self.slack_reward + progress + (self.success_reward if success else 0.0)
        return reward / self.success_reward if self.reward_mode == "habitat_normalised" else reward

    def step(self, action):
        action = int(action)
        if not 0 <= action < 3:
            raise PvrError(f"ImageNav actions are 0 (forward), 1 (left), 2 (right); got {action}")
        self.backend.act(action)
        self.steps += 1
        dist = self.geodesic_distance()
        measured = dist if self.success_measure == "geodesic" else self.euclidean_distance()
        success = measured < self.success_radius
        progress = (self._dist - dist) if math.isfinite(dist) and math.isfinite(self._dist) else 0.0
        self._dist = dist
        truncated = (not success) and self.steps >= self.max_steps
        info = {"geodesic_distance": dist, "distance_to_goal": measured, "reached_goal": success}
        return self._obs(), float(self._reward(progress, success)), bool(success), bool(truncated), info

    def render(self):
        return self._frame

    def close(self):
        self.backend.close()


def true_state(env: gym.Env) -> np.ndarray:
    return env.unwrapped.true_state()


def success(env: gym.Env, reward, terminated: bool, truncated: bool, info: dict) -> bool:
    return bool(info.get("reached_goal", False))


TASK_KWARGS = ("max_steps", "success_radius", "success_measure", "reward", "slack_reward", "success_reward",
               "min_goal_depth", "min_start_distance", "max_start_distance", "geodesic_to_euclid_ratio",
               "max_floor_gap", "min_island_radius", "start_tries", "goal_tries", "true_state_layout")


def make_task_env(backend: NavBackend, hw: tuple[int, int], *, scene: str, **kwargs: Any) -> ImageNavEnv:
    unknown = sorted(set(kwargs) - set(TASK_KWARGS))
    if unknown:
        backend.close()
        raise PvrError(f"bad keyword argument(s) for image navigation: {', '.join(unknown)}; supported: "
                       f"image_size, {', '.join(TASK_KWARGS)}")
    return ImageNavEnv(backend, hw, scene=scene, **kwargs)
