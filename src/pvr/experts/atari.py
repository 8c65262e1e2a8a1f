"""``lookahead``: an Atari planner that searches with the emulator itself (ALE clone/restore).

No pretrained agent. Each decision the planner snapshots the console
(``ale.cloneState``), rolls out a set of candidate *base policies* for ``depth`` agent
steps each, scores every candidate by its discounted game reward, puts the console
back (``ale.restoreState``) and plays the first action of the best one (the rollout
algorithm: one step of policy improvement over the candidates).

- Generic candidates (any game): for each action ``a`` of the minimal action set,
  "``a``, then random actions each held for ``hold`` steps", ``rollouts`` times;
  the score is the mean return; ties are broken with the seeded generator.
- Per-game hooks (``GAMES``, keyed by the ROM name) replace them by closed-loop
  policies that read the console RAM. Pong: "keep the paddle at ball height +
  ``offset``" for a few offsets. Where the ball meets the paddle sets the return
  angle, so the search picks the offset whose return the computer opponent misses
  (it needs ``depth`` >= ~40 steps to see the point land: contact, crossing, miss).
  Pong's hook also ends a rollout at its first point (a point ends the rally) and
  plans only while the ball comes towards the player; otherwise the last chosen
  policy keeps running (nothing the paddle does then changes the rally).

Rollouts step the raw ALE exactly as the env does: ``ale.act(action_set[a])`` once
per frame, ``frameskip`` frames per agent step (a ``(lo, hi)`` frameskip is sampled
from the planner's own generator, never the env's), and the suite's ``AtariStarts``
steps around the agent's. With ``starts="original"`` (the default) a rollout starts
from what the env's next step will press first: the pending FIRE and no-ops of an
episode's first step, or the FIRE due after a change of lives (read from the wrapper's
``pending_fire`` / ``pending_noops`` / ``lives``); their rewards are dropped, as the env
drops them, and a change of lives inside a rollout puts a FIRE in front of its next
step. Closed-loop policies read the console before those presses, as ``act`` does.
With ``starts="reset"`` (pvr's former starts) FIRE follows a lost life in the same
step, its reward added.

Leaving the console as found: the snapshot is ``cloneState(include_rng=True)``, so
restoring it also rewinds the ALE generator that draws sticky actions (ale-py 0.12's
``cloneState()`` leaves it out by default, and planning would then change every later
sticky draw of the episode). With ``repeat_action_probability`` > 0 (``ALE/*-v5``:
0.25; the ``*Deterministic-v4`` ids: 0) two more facts of ale-py 0.12 matter:

- the *held* action that a sticky frame repeats is not in the saved state;
  ``restoreState`` keeps whatever the last rollout pressed. The planner re-holds the
  action the env was last given (its own last action; NOOP after reset, which ALE's
  reset leaves held; with ``starts="reset"``, FIRE after reset or a lost life where the
  game fires) by pressing it for a few frames on the snapshot and restoring
  again (a sticky draw keeps the old action with probability p per frame; the frame
  count makes a miss < 1e-12). It is exact except when the env's own last step
  repeated the older action on all its frames (probability p^frameskip, 0.4% of steps
  for v5), where the env holds that older action and the planner cannot see it.
- rollouts restore the emulator without the generator, so each one meets fresh
  sticky draws instead of the ones the real env will meet next (no peeking).

With p = 0 and a fixed frameskip every rollout of a deterministic policy is exact and
run once. The screen buffer is not part of the state either: right after planning
``ale.getScreenRGB()`` shows the last rollout's frame, but the next ``env.step``
redraws the whole screen, so observations are unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from pvr.errors import PvrError
from pvr.experts.base import Expert, register_expert

Policy = Callable[[np.ndarray, int], int]  # (console RAM, step within the rollout) -> action index


@dataclass
class Candidate:
    """A base policy to roll out: ``first`` (if set) on the first step, then ``policy``."""

    label: str
    policy: Policy
    first: int | None = None
    stochastic: bool = False


@dataclass
class GameHook:
    """Per-game knowledge for the planner (all optional beyond ``candidates``).

    ``candidates(planner)`` returns closed-loop base policies; ``plan_when(prev_ram, ram)``
    says whether this decision is worth a search (else the current candidate keeps
    playing); ``stop_on_reward`` ends a rollout at its first non-zero reward.
    """

    candidates: Callable[["Lookahead"], list[Candidate]]
    plan_when: Callable[[np.ndarray | None, np.ndarray], bool] | None = None
    stop_on_reward: bool = False
    defaults: dict = field(default_factory=dict)
    notes: str = ""


# -- Pong --------------------------------------------------------------------------------------------
# RAM (checked by stepping the game): 51 = player (right, green) paddle y, moved up by RIGHT
# and down by LEFT; 49 = ball x (grows towards the player: ~187 when it meets the player's
# paddle, 205 once past it); 54 = ball y (0 while no ball is in play); 13 / 14 = computer /
# player score.
PONG_PADDLE_Y, PONG_BALL_X, PONG_BALL_Y = 51, 49, 54
PONG_OFFSETS = (0, -4, 4, -8, 8, -12, 12)  # preference order among equal scores: centred first


def _pong_candidates(planner: "Lookahead") -> list[Candidate]:
    up, down = planner.action_index("RIGHT"), planner.action_index("LEFT")
    dead = 2

    def tracker(offset: int) -> Policy:
        def policy(ram: np.ndarray, t: int) -> int:
            ball = int(ram[PONG_BALL_Y])
            if ball == 0:
                return 0
            d = ball + offset - int(ram[PONG_PADDLE_Y])
            return down if d > dead else (up if d < -dead else 0)

        return policy

    return [Candidate(f"track{o:+d}", tracker(o)) for o in planner.hook_options.get("offsets", PONG_OFFSETS)]


def _pong_plan_when(prev: np.ndarray | None, ram: np.ndarray) -> bool:
    """Search while the ball is in play and coming towards the player (or when unsure)."""
    if prev is None or int(ram[PONG_BALL_Y]) == 0 or int(prev[PONG_BALL_Y]) == 0:
        return True
    return int(ram[PONG_BALL_X]) >= int(prev[PONG_BALL_X])


GAMES: dict[str, GameHook] = {
    "pong": GameHook(_pong_candidates, plan_when=_pong_plan_when, stop_on_reward=True,
                     defaults={"depth": 40}, notes="paddle tracks ball y + offset; offset chosen by rollouts"),
}

DEFAULTS = {"depth": 30, "rollouts": 4, "discount": 0.99, "hold": 4, "replan_every": 1}


@dataclass
class Pending:
    """What the env presses around the agent's next action (a copy of ``AtariStarts``' state)."""

    mode: str  # "original", "reset" or "none" (no AtariStarts in the chain)
    fire: bool = False  # FIRE before the next action (original)
    noops: int = 0  # NOOPs before the next action (original)
    lives: int = 0  # the count a change of lives is measured against


def _atari_starts(env: gym.Env):
    """The suite's ``AtariStarts`` wrapper in ``env``'s chain, or None (then no FIRE after a lost life)."""
    from pvr.envs.atari import AtariStarts

    e = env
    while isinstance(e, gym.Wrapper):
        if isinstance(e, AtariStarts):
            return e
        e = e.env
    return None


@register_expert("lookahead", suites=("Atari",),
                 description="rollout planner on the emulator (ALE cloneState/restoreState); per-game hooks (Pong)")
class Lookahead(Expert):
    """Rollout planner on the live ALE; see the module docstring.

    ``depth`` agent steps per rollout, ``rollouts`` per stochastic candidate, ``discount``
    per step, random actions held ``hold`` steps (generic candidates), a new search at
    most every ``replan_every`` decisions. ``game``: ``"auto"`` uses the ROM's hook in
    ``GAMES`` if there is one, ``None`` forces the generic planner, a name forces that
    hook. ``offsets`` (Pong) overrides the tracking offsets.
    """

    name = "lookahead"

    def __init__(self, env: gym.Env, *, depth: int | None = None, rollouts: int | None = None,
                 discount: float | None = None, hold: int | None = None, replan_every: int | None = None,
                 game: str | None = "auto", offsets: list[int] | None = None):
        super().__init__(env)
        u = env.unwrapped
        if not hasattr(u, "ale") or not hasattr(u, "_action_set"):
            raise PvrError(f"the lookahead expert plans on ALE Atari envs (Atari-*), got {type(u).__name__}")
        if getattr(u, "continuous", False):
            raise PvrError("the lookahead expert needs discrete actions; build the Atari env without continuous=True")
        self.ale = u.ale
        self.rom = str(getattr(u, "_game", "")).lower()
        self.actions = list(u._action_set)
        self.meanings = list(u.get_action_meanings())
        fs = u._frameskip
        self.frameskip: int | tuple[int, int] = (int(fs[0]), int(fs[1])) if isinstance(fs, tuple) else int(fs)
        self.sticky = float(self.ale.getFloat("repeat_action_probability"))
        self._starts = _atari_starts(env)
        self.fire = bool(getattr(self._starts, "fire", False))
        self.starts = str(getattr(self._starts, "starts", "none"))

        if game == "auto":
            self.game = self.rom if self.rom in GAMES else None
        elif game is None:
            self.game = None
        else:
            if game not in GAMES:
                raise PvrError(f"no lookahead game hook {game!r}; hooks exist for {', '.join(sorted(GAMES))}; pass "
                               "game=None (or leave game='auto') to use the generic planner, which works for any game")
            self.game = game
        self.hook = GAMES[self.game] if self.game is not None else None
        self.hook_options: dict[str, Any] = {}
        if offsets is not None:
            if self.game != "pong":
                raise PvrError("offsets= is an option of the Pong hook; this env plans with "
                               f"{'the ' + self.game + ' hook' if self.game else 'the generic planner'}")
            self.hook_options["offsets"] = [int(o) for o in offsets]

        given = {"depth": depth, "rollouts": rollouts, "discount": discount, "hold": hold, "replan_every": replan_every}
        cfg = {**DEFAULTS, **(self.hook.defaults if self.hook else {}), **{k: v for k, v in given.items() if v is not None}}
        self.depth, self.rollouts, self.hold = int(cfg["depth"]), int(cfg["rollouts"]), int(cfg["hold"])
        self.discount, self.replan_every = float(cfg["discount"]), int(cfg["replan_every"])
        for key in ("depth", "rollouts", "hold", "replan_every"):
            if getattr(self, key) < 1:
                raise PvrError(f"lookahead: {key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 < self.discount <= 1.0:
            raise PvrError(f"lookahead: discount must be in (0, 1], got {self.discount}")

        self._rng = np.random.default_rng(0)
        self._stop_on_reward = bool(self.hook.stop_on_reward) if self.hook else False
        self._prime_frames = self._frames_to_hold()
        self.reset(None, {})

    # ------------------------------------------------------------------ interface
    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self, obs: Any, info: dict) -> None:
        self._current: Candidate | None = None
        self._since = 0
        self._prev_ram: np.ndarray | None = None
        # The action the console holds: ALE's reset leaves NOOP; starts="reset" pressed FIRE last.
        self._held = 1 if (self.fire and self.starts == "reset") else 0
        self._lives = self.ale.lives()
        self.searches = 0
        self.last_scores: dict[str, float] = {}

    def act(self, obs: Any, info: dict) -> int:
        ale = self.ale
        lives = ale.lives()
        if self.fire and self.starts == "reset" and lives < self._lives:
            self._held = 1  # AtariStarts pressed FIRE after the lost life, in that step
        self._lives = lives
        ram = ale.getRAM().copy()
        wants = self.hook.plan_when(self._prev_ram, ram) if (self.hook and self.hook.plan_when) else True
        if self._current is None or (wants and self._since >= self.replan_every):
            self._current = self._search()
            self._since = 0
        cand = self._current
        action = cand.first if (self._since == 0 and cand.first is not None) else cand.policy(ram, self._since)
        self._since += 1
        self._prev_ram = ram
        self._held = int(action)
        return int(action)

    def describe(self) -> dict:
        out = {"name": self.name, "rom": self.rom, "game_hook": self.game, "depth": self.depth,
               "rollouts": self.rollouts, "discount": self.discount, "hold": self.hold,
               "replan_every": self.replan_every,
               "frameskip": list(self.frameskip) if isinstance(self.frameskip, tuple) else self.frameskip,
               "repeat_action_probability": self.sticky, "fire_on_life_loss": self.fire, "starts": self.starts}
        if self.hook is not None:
            out["stop_on_reward"] = self._stop_on_reward
            if self.game == "pong":
                out["offsets"] = list(self.hook_options.get("offsets", PONG_OFFSETS))
        return out

    # ------------------------------------------------------------------ helpers for hooks
    def action_index(self, meaning: str) -> int:
        if meaning not in self.meanings:
            raise PvrError(f"the {self.rom} action set {self.meanings} has no {meaning}; the {self.game} hook needs "
                           "it (pass game=None for the generic planner)")
        return self.meanings.index(meaning)

    # ------------------------------------------------------------------ planning
    def _candidates(self) -> list[Candidate]:
        if self.hook is not None:
            return self.hook.candidates(self)
        n = len(self.actions)
        out = []
        for a in range(n):
            seq = np.repeat(self._rng.integers(0, n, size=-(-self.depth // self.hold)), self.hold)

            def policy(ram: np.ndarray, t: int, seq=seq) -> int:
                return int(seq[min(t, len(seq) - 1)])

            out.append(Candidate(f"{self.meanings[a]}+random", policy, first=a, stochastic=True))
        return out

    def _exact(self, cand: Candidate) -> bool:
        return not cand.stochastic and self.sticky == 0.0 and isinstance(self.frameskip, int)

    def _pending(self) -> Pending:
        st = self._starts
        if st is None:
            return Pending("none", lives=self.ale.lives())
        if self.starts == "original":
            return Pending("original", bool(st.pending_fire), int(st.pending_noops), int(st.lives))
        return Pending(self.starts, lives=self.ale.lives())

    def _search(self) -> Candidate:
        ale = self.ale
        self.searches += 1
        start = self._pending()
        root = ale.cloneState(include_rng=True)
        sampled = ale.cloneState() if self.sticky > 0 else root  # rollouts meet fresh sticky draws
        cands = self._candidates()
        scores = np.empty(len(cands))
        try:
            for i, cand in enumerate(cands):
                runs = 1 if self._exact(cand) else self.rollouts
                total = 0.0
                for k in range(runs):
                    if k and cand.stochastic and self.hook is None:  # a fresh random tail per rollout
                        cand = self._resample(cand)
                    ale.restoreState(sampled)
                    total += self._rollout(cand, Pending(**vars(start)))
                scores[i] = total / runs
        finally:
            self._restore(root)
        best = np.flatnonzero(scores >= scores.max() - 1e-9)
        pick = int(best[0]) if self.hook is not None else int(self._rng.choice(best))
        self.last_scores = {c.label: float(s) for c, s in zip(cands, scores)}
        return cands[pick]

    def _resample(self, cand: Candidate) -> Candidate:
        n = len(self.actions)
        seq = np.repeat(self._rng.integers(0, n, size=-(-self.depth // self.hold)), self.hold)
        return Candidate(cand.label, lambda ram, t, seq=seq: int(seq[min(t, len(seq) - 1)]), cand.first, True)

    def _rollout(self, cand: Candidate, pending: Pending) -> float:
        ale, ret, g = self.ale, 0.0, 1.0
        for t in range(self.depth):
            a = cand.first if (t == 0 and cand.first is not None) else cand.policy(ale.getRAM(), t)
            r, over = self._advance(a, pending)
            ret += g * r
            g *= self.discount
            if over or (self._stop_on_reward and r != 0):
                break
        return ret

    def _frames(self) -> int:
        if isinstance(self.frameskip, int):
            return self.frameskip
        return int(self._rng.integers(*self.frameskip))

    def _press(self, a: int) -> float:
        """One env step's worth of frames of action ``a`` on the raw console (``AtariEnv.step``)."""
        ale, code, r = self.ale, self.actions[a], 0.0
        for _ in range(self._frames()):
            r += ale.act(code)
        return r

    def _advance(self, a: int, pending: Pending) -> tuple[float, bool]:
        """One agent step on the raw console, as ``AtariEnv.step`` + ``AtariStarts`` would do it."""
        ale = self.ale
        if pending.mode == "original":
            if pending.fire:  # the env's FIRE / no-ops before the action; rewards and done dropped
                pending.fire = False
                self._press(1)
            while pending.noops > 0:
                pending.noops -= 1
                self._press(0)
            r = self._press(a)
            lives = ale.lives()
            if lives != pending.lives:  # the env's next step starts with FIRE
                pending.lives = lives
                pending.fire = self.fire
            return r, ale.game_over()
        lives = ale.lives()
        r = self._press(a)
        if ale.game_over():
            return r, True
        if pending.mode == "reset" and self.fire and ale.lives() < lives:
            r += self._press(1)
        return r, ale.game_over()

    def _frames_to_hold(self) -> int:
        p = self.sticky
        if p <= 0.0:
            return 0
        if p >= 1.0:
            return 1  # the held action never changes; nothing to restore
        return int(min(200, math.ceil(math.log(1e-12) / math.log(p))))

    def _restore(self, root) -> None:
        """Back to the snapshot, RNG included, holding the action the env was last given."""
        ale = self.ale
        ale.restoreState(root)
        if self._prime_frames:
            code = self.actions[self._held]
            for _ in range(self._prime_frames):
                ale.act(code)
            ale.restoreState(root)


__all__ = ["GAMES", "GameHook", "Candidate", "Lookahead"]
