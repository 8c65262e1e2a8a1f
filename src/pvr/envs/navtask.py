"""Image-goal navigation, the task logic shared by ``ImageNav-*`` (MiniWorld) and ``HabitatImageNav-*``.

The paper's Habitat task without its simulator: the agent sees its current view
and a view taken at the goal pose, stacked on channels (H, W, 6) uint8 — current
first, goal last — and acts with 0 = forward, 1 = turn left, 2 = turn right (the
original's Habitat actions without STOP). The episode *terminates* with
``success`` as soon as the agent is within ``success_radius`` of the goal position
(so "ends within the radius" is what success means; there is no STOP to call) and
is *truncated* after ``max_steps``.

Reward, as the original's normalised Habitat reward: geodesic progress towards
the goal in metres divided by 2.5 (Habitat's success reward), plus 1 on success.

Goals are sampled only in reachable free space (a simulator "navigable point")
with a heading whose view is informative: the free distance straight ahead must
be at least ``min_goal_depth`` metres (no blank wall at arm's length). Starts are
reachable points at least ``min_start_distance`` (geodesic) from the goal.

``true_state`` = (agent x, agent z, cos heading, sin heading, goal x, goal z,
cos goal heading, sin goal heading), float32, in the simulator's ground plane.

A simulator plugs in through :class:`NavBackend`; experts use the env's
:meth:`ImageNavEnv.geodesic_distance` and :meth:`ImageNavEnv.shortest_path`.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pvr.errors import PvrError

FORWARD, LEFT, RIGHT = 0, 1, 2
ACTION_NAMES = ("forward", "turn_left", "turn_right")
SUCCESS_REWARD = 2.5  # Habitat's; rewards are divided by it as the original did


class NavBackend:
    """What the task needs from a simulator. Positions are (x, z) ground-plane arrays, headings radians."""

    forward_step: float
    turn_angle_deg: float

    def new_episode(self, rng: np.random.Generator) -> None:
        """Called at each reset before sampling (regenerate/reload the scene if needed)."""

    def sample_navigable(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

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

    def act(self, action: int) -> None:
        """Apply forward / turn left / turn right (with the simulator's collision handling)."""
        raise NotImplementedError

    def render(self) -> np.ndarray:
        """The agent's current view."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageNavEnv(gym.Env):
    """Image-goal navigation on any :class:`NavBackend` (see module docstring)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, backend: NavBackend, hw: tuple[int, int], *, scene: str, max_steps: int = 500,
                 success_radius: float = 0.5, min_goal_depth: float = 1.5, min_start_distance: float = 1.0,
                 max_tries: int = 200):
        self.backend = backend
        self.scene = scene
        self.hw = tuple(hw)
        self.max_steps = int(max_steps)
        self.success_radius = float(success_radius)
        self.min_goal_depth = float(min_goal_depth)
        self.min_start_distance = float(min_start_distance)
        self.max_tries = int(max_tries)
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
    def _sample_goal(self) -> None:
        rng = self.np_random
        for _ in range(self.max_tries):
            goal = self.backend.sample_navigable(rng)
            headings = rng.uniform(-math.pi, math.pi, size=8)
            clear = [h for h in headings if self.backend.goal_clearance(goal, h) >= self.min_goal_depth]
            if clear:
                self.goal, self.goal_heading = np.asarray(goal, float), float(clear[0])
                self.backend.set_goal(self.goal)
                self.goal_view = self.backend.render_at(self.goal, self.goal_heading)
                return
        raise PvrError(f"scene {self.scene!r}: no reachable goal with a view of at least "
                       f"{self.min_goal_depth} m in {self.max_tries} tries; lower min_goal_depth")

    def _sample_start(self) -> None:
        rng = self.np_random
        for _ in range(self.max_tries):
            start = self.backend.sample_navigable(rng)
            d = self.backend.geodesic_distance(start)
            if math.isfinite(d) and d >= self.min_start_distance:
                self.backend.set_agent(start, float(rng.uniform(-math.pi, math.pi)))
                return
        raise PvrError(f"scene {self.scene!r}: no start at least {self.min_start_distance} m from the goal "
                       f"in {self.max_tries} tries; lower min_start_distance")

    def _obs(self) -> np.ndarray:
        self._frame = self.backend.render()
        return np.concatenate([self._frame, self.goal_view], axis=-1)

    def true_state(self) -> np.ndarray:
        pos, heading = self.backend.agent_pose()
        return np.array([pos[0], pos[1], math.cos(heading), math.sin(heading), self.goal[0], self.goal[1],
                         math.cos(self.goal_heading), math.sin(self.goal_heading)], np.float32)

    def distance_to_goal(self) -> float:
        return float(np.linalg.norm(self.backend.agent_pose()[0] - self.goal))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.backend.new_episode(self.np_random)
        self._sample_goal()
        self._sample_start()
        self.steps = 0
        self._dist = self.geodesic_distance()
        return self._obs(), {"geodesic_distance": self._dist, "goal_position": self.goal.copy()}

    def step(self, action):
        action = int(action)
        if not 0 <= action < 3:
            raise PvrError(f"ImageNav actions are 0 (forward), 1 (left), 2 (right); got {action}")
        self.backend.act(action)
        self.steps += 1
        dist = self.geodesic_distance()
        success = self.distance_to_goal() <= self.success_radius
        progress = (self._dist - dist) if math.isfinite(dist) and math.isfinite(self._dist) else 0.0
        self._dist = dist
        reward = progress / SUCCESS_REWARD + (1.0 if success else 0.0)
        truncated = (not success) and self.steps >= self.max_steps
        info = {"geodesic_distance": dist, "reached_goal": success}
        return self._obs(), float(reward), bool(success), bool(truncated), info

    def render(self):
        return self._frame

    def close(self):
        self.backend.close()


def true_state(env: gym.Env) -> np.ndarray:
    return env.unwrapped.true_state()


def success(env: gym.Env, reward, terminated: bool, truncated: bool, info: dict) -> bool:
    return bool(info.get("reached_goal", False))


def make_task_env(backend: NavBackend, hw: tuple[int, int], *, scene: str, **kwargs: Any) -> ImageNavEnv:
    try:
        return ImageNavEnv(backend, hw, scene=scene, **kwargs)
    except TypeError as exc:
        raise PvrError(f"bad keyword argument for image navigation ({exc}); supported: image_size, max_steps, "
                       "success_radius, min_goal_depth, min_start_distance") from None
