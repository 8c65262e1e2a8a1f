"""``bfs``: an optimal MiniGrid expert by breadth-first search over the simulator's state.

The planner snapshots the live ``MiniGridEnv`` (grid, agent pose, carried object,
step count, RNG state), tries actions with the base env's own ``step`` (never
through the render wrappers, so no pixels are drawn while planning), dedups
states by ``(agent_pos, agent_dir, carried encoding, grid.encode())`` and stops at
the first transition that terminates with positive reward. BFS order makes that
plan a shortest one. Transitions that terminate with zero reward (lava) or hit
the time limit are dead ends. Afterwards the real state objects are put back,
untouched: every trial ran on copies, so the env is exactly as before.

Speed: the base ``MiniGridEnv.step`` only mutates the grid for pickup, drop and
toggle, so children reached by turning or moving share their parent's grid and
its encoding; the grid is deep-copied only before a mutating action. Envs that
override ``step`` (e.g. dynamic obstacles) get a copy before every action.

``act`` follows the plan and re-plans whenever the env is not in the state the
plan expected (e.g. someone else stepped it, or a stochastic env deviated).
"""
from __future__ import annotations

import copy
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.errors import PvrError
from pvr.experts.base import Expert, register_expert

StateKey = tuple


def _no_obs() -> None:
    return None


def _key(u, grid_bytes: bytes) -> StateKey:
    carried = u.carrying.encode() if u.carrying is not None else None
    pos = u.agent_pos
    return (int(pos[0]), int(pos[1]), int(u.agent_dir), carried, grid_bytes)


@register_expert("bfs", suites=("MiniGrid",), description="optimal planner: breadth-first search over the MiniGrid simulator state")
class MiniGridBFS(Expert):
    """Shortest-path expert for any deterministic MiniGrid task.

    ``max_nodes`` bounds one search (a PvrError-free fallback: when no plan is found
    the expert sets ``gave_up`` and returns the ``done`` no-op action).
    """

    name = "bfs"

    def __init__(self, env: gym.Env, *, max_nodes: int = 200_000):
        super().__init__(env)
        from minigrid.core.constants import DIR_TO_VEC
        from minigrid.minigrid_env import MiniGridEnv

        self._dir_to_vec = DIR_TO_VEC

        u = env.unwrapped
        if not isinstance(u, MiniGridEnv):
            raise PvrError(f"the bfs expert plans on MiniGrid envs only, got {type(u).__name__}; pick another expert (`pvr experts`)")
        self.max_nodes = max_nodes
        A = u.actions
        self._n_actions = int(env.action_space.n)
        # With the base step we know its semantics: which actions leave the grid alone,
        # which are no-ops in a given state, and that its observation is unused.
        self._base_step = type(u).step is MiniGridEnv.step
        self._pure = {int(A.left), int(A.right), int(A.forward)} if self._base_step else set()
        self._A = A
        self._noop = int(A.done)
        self._plan: list[int] = []
        self._expected: list[StateKey] = []
        self.gave_up = False
        self.plans = 0  # number of searches run (replans included), for diagnostics
        self.expanded = 0  # states expanded over all searches

    # ----------------------------------------------------------------- interface
    def reset(self, obs: Any, info: dict) -> None:
        self.gave_up = False
        self._replan()

    def act(self, obs: Any, info: dict) -> int:
        u = self.env.unwrapped
        if not self._plan or _key(u, u.grid.encode().tobytes()) != self._expected[0]:
            self._replan()
        if not self._plan:
            self.gave_up = True
            return self._noop
        self._expected.pop(0)
        return self._plan.pop(0)

    def describe(self) -> dict:
        return {"name": self.name, "optimal": True, "max_nodes": self.max_nodes}

    # ----------------------------------------------------------------- planning
    def _replan(self) -> None:
        plan, keys = self.plan()
        self._plan, self._expected = plan, keys

    def plan(self) -> tuple[list[int], list[StateKey]]:
        """Shortest action sequence to success from the env's current state, and the
        state key *before* each action. Empty lists when the goal is unreachable."""
        u = self.env.unwrapped
        self.plans += 1
        saved = (u.grid, u.carrying, u.agent_pos, u.agent_dir, u.step_count, u.render_mode)
        rng_state = copy.deepcopy(u.np_random.bit_generator.state)
        u.render_mode = None  # 'human' would open a window on every trial step
        if self._base_step:
            u.gen_obs = _no_obs  # the base step's observation is unused here; skip its cost
        try:
            return self._search(u)
        finally:
            if self._base_step:
                del u.gen_obs
            u.grid, u.carrying, u.agent_pos, u.agent_dir, u.step_count, _ = saved
            u.render_mode = saved[-1]
            u.np_random.bit_generator.state = rng_state

    def _is_noop(self, a: int, grid, carrying, pos, adir) -> bool:
        """True when base-step action ``a`` cannot change the state (other than step_count)."""
        A = self._A
        if a == A.done:
            return True
        if a not in (A.pickup, A.drop, A.toggle):
            return False
        fwd = np.asarray(pos) + self._dir_to_vec[adir]
        cell = grid.get(int(fwd[0]), int(fwd[1]))
        if a == A.pickup:
            return not (cell is not None and cell.can_pickup() and carrying is None)
        if a == A.drop:
            return not (cell is None and carrying is not None)
        return cell is None  # toggle

    def _search(self, u) -> tuple[list[int], list[StateKey]]:
        root_bytes = u.grid.encode().tobytes()
        root_key = _key(u, root_bytes)
        # node: (grid, grid_bytes, carrying, agent_pos, agent_dir, step_count)
        root = (u.grid, root_bytes, u.carrying, u.agent_pos, u.agent_dir, u.step_count)
        parents: dict[StateKey, tuple[StateKey, int] | None] = {root_key: None}
        queue = deque([(root_key, root)])
        while queue:
            key, (grid, gbytes, carrying, pos, adir, steps) = queue.popleft()
            self.expanded += 1
            if len(parents) > self.max_nodes:
                return [], []
            for a in range(self._n_actions):
                if self._base_step and self._is_noop(a, grid, carrying, pos, adir):
                    continue  # same state, one step later: never on a shortest path
                pure = a in self._pure
                if pure:
                    u.grid, u.carrying = grid, carrying
                else:
                    u.grid, u.carrying = copy.deepcopy((grid, carrying))
                u.agent_pos, u.agent_dir, u.step_count = pos, adir, steps
                _, reward, terminated, truncated, _ = u.step(a)
                if terminated and reward > 0:
                    return self._path(parents, key, a)
                if terminated or truncated:
                    continue
                cbytes = gbytes if pure else u.grid.encode().tobytes()
                ckey = _key(u, cbytes)
                if ckey in parents:
                    continue
                parents[ckey] = (key, a)
                queue.append((ckey, (u.grid, cbytes, u.carrying, u.agent_pos, u.agent_dir, u.step_count)))
        return [], []

    @staticmethod
    def _path(parents, key, last_action) -> tuple[list[int], list[StateKey]]:
        actions, keys = [last_action], [key]
        while parents[key] is not None:
            key, a = parents[key]
            actions.append(a)
            keys.append(key)
        return actions[::-1], keys[::-1]


def plan_length(env: gym.Env) -> int:
    """Length of the optimal plan from the env's current state (-1 if unreachable)."""
    plan, _ = MiniGridBFS(env).plan()
    return len(plan) if plan else -1


__all__ = ["MiniGridBFS", "plan_length"]
