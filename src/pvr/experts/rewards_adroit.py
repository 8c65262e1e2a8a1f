"""Planning rewards for the Hand Manipulation Suite (Adroit, gymnasium-robotics).

``reward`` is the original mj_envs / DAPG shaped reward of each task, in numpy on a
whole batch of rollouts; ``shaping`` adds planning-only terms that make a short
horizon with few samples see progress (the DAPG bonuses are steps, flat until the
object moves). Positions come from :meth:`Rollout.kinematics` (exact for the
sampled state; the env's own step reward reads ``site_xpos`` left one physics
sub-step behind by ``mj_step`` — the same quantities otherwise).

- **door** (``gym:AdroitHandDoor``): ``-0.1·|palm − handle| − 0.1·(hinge − 1.57)²
  − 1e-5·|qvel|² + 2·[hinge > 0.2] + 8·[hinge > 1.0] + 10·[hinge > 1.35]``.
  gymnasium-robotics ≥ 1.2.1 has ``+0.1·|palm − handle|`` (rewards moving the hand
  *away*); we keep the original's sign. Goal: ``hinge ≥ 1.35``. Shaping: a stronger
  hand-to-handle pull, the latch turned and the door angle (linear, not just the
  steps).
- **hammer** (``gym:AdroitHandHammer``): ``-0.1·|palm − hammer| − |head − nail|
  − 10·|nail − goal| − 1e-2·|qvel| + 2·[hammer and head above 4 cm]
  + 25·[|nail − goal| < 0.02] + 75·[|nail − goal| < 0.01]``; gymnasium-robotics
  ≥ 1.2.1 flips the sign of the palm term, we keep the original's. Goal:
  ``|nail − goal| < 0.01``. Shaping: hand to the hammer's handle, the hammer lifted,
  the head over the nail, and the nail depth.
- **pen** (``gym:AdroitHandPen``): ``-|pen − target ball| + orientation similarity
  + 10·[close and sim > 0.9] + 50·[close and sim > 0.95] − 5·[pen below 7.5 cm]``
  (unchanged in gymnasium-robotics). Goal: ``|pen − ball| < 0.075`` and
  ``sim > 0.95``. Shaping: the pen kept on the goal ball (linear, and steep —
  300/m — beyond 4 cm: a pen that slips out of the hand is lost), minus 10 × the
  angle (radians) between the pen's axis and the target's (the similarity, a
  cosine, is flat near a half turn and near the goal: large turns were slow), a
  penalty on the pen's linear velocity (2·|v|², it slides off the palm) and only a
  slight one on its spin (0.01·|ω|², the turn has to be fast: an episode is 1 s).
  Success (> 20 of 100 steps at the goal), ``pvr collect`` on seeds 0–9: 9/10 with
  the defaults (128 samples × 30 steps × 3 iterations, ~144 s an episode on two
  cores); 4/10 with 32 × 16 × 2 (~20 s; 8/10 on seeds 100–109). The small setting
  fails on targets needing a turn of ~110° or more (start similarity below about
  −0.4): the pen reaches sim ≈ 0.9, then rolls off the palm beyond its 0.16 s
  horizon. Keeping only the successes of the cheap setting would bias a dataset
  towards easy targets, so the defaults pay for the long horizon.
- **relocate** (``gym:AdroitHandRelocate``): ``-0.1·|palm − ball|
  + [ball above 4 cm]·(1 − 0.5·|palm − target| − 0.5·|ball − target|)
  + 10·[|ball − target| < 0.1] + 20·[|ball − target| < 0.05]``; gymnasium-robotics
  ≥ 1.2.1 flips the palm term's sign, we keep the original's. Goal:
  ``|ball − target| < 0.1``. Shaping: palm and fingertips (thumb, index, middle) to
  the ball, the ball lifted (continuous, capped at 10 cm), the lifted ball to the
  target, and a penalty on the ball slid along the table (a ball pushed instead of
  grasped rolls away, out of a short horizon's reach).
- Planner settings (``defaults``): 32 samples × 12 steps × 2 iterations, 8 elites,
  knots every 3 steps, noise 0.5 — sized for one or two CPU cores (Adroit physics
  costs ~40 µs a sub-step, 200 µs a control step, more in contact); pen: 128 × 30 × 3,
  16 elites, noise 0.2 (see above).

The goal predicates (:func:`door_goal`, ...) are Adroit's per-step ``info["success"]``
(kept by the suite as ``info["goal_achieved"]``); the suite's episode success counts
them (:mod:`pvr.envs.hms`).
"""
from __future__ import annotations

import numpy as np

from pvr.experts.planning import Rollout, register_task


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


_TIPS = ("S_thtip", "S_fftip", "S_mftip")


def _qvel_sq(r: Rollout) -> np.ndarray:
    return np.square(r.qvel).sum(-1)


# ------------------------------------------------------------------ door
def door_terms(r: Rollout) -> dict[str, np.ndarray]:
    k = r.kinematics(sites=("S_grasp", "S_handle"))
    return {"palm_handle": _dist(k["S_grasp"], k["S_handle"]), "hinge": r.joint("door_hinge"),
            "latch": r.joint("latch")}


def door_goal(r: Rollout) -> np.ndarray:
    return r.joint("door_hinge") >= 1.35


def door(r: Rollout) -> np.ndarray:
    t = door_terms(r)
    hinge = t["hinge"]
    return (-0.1 * t["palm_handle"] - 0.1 * (hinge - 1.57) ** 2 - 1e-5 * _qvel_sq(r)
            + 2.0 * (hinge > 0.2) + 8.0 * (hinge > 1.0) + 10.0 * (hinge > 1.35))


def door_shaping(r: Rollout) -> np.ndarray:
    t = door_terms(r)
    return -2.0 * t["palm_handle"] + 1.0 * np.minimum(t["latch"], 1.0) + 5.0 * t["hinge"]


# ------------------------------------------------------------------ hammer
_HAMMER_SITES = ("S_grasp", "tool", "S_target", "nail_goal")


def hammer_terms(r: Rollout) -> dict[str, np.ndarray]:
    k = r.kinematics(sites=_HAMMER_SITES, bodies=("Object",))
    return {"palm": k["S_grasp"], "hammer": k["Object"], "head": k["tool"], "nail": k["S_target"],
            "goal": k["nail_goal"], "palm_hammer": _dist(k["S_grasp"], k["Object"]),
            "head_nail": _dist(k["tool"], k["S_target"]), "nail_goal": _dist(k["S_target"], k["nail_goal"])}


def hammer_goal(r: Rollout) -> np.ndarray:
    return hammer_terms(r)["nail_goal"] < 0.01


def hammer(r: Rollout) -> np.ndarray:
    t = hammer_terms(r)
    lifted = (t["hammer"][..., 2] > 0.04) & (t["head"][..., 2] > 0.04)
    g = t["nail_goal"]
    return (-0.1 * t["palm_hammer"] - t["head_nail"] - 10.0 * g - 1e-2 * np.sqrt(_qvel_sq(r))
            + 2.0 * lifted + 25.0 * (g < 0.02) + 75.0 * (g < 0.01))


def hammer_shaping(r: Rollout) -> np.ndarray:
    t = hammer_terms(r)
    lift = np.minimum(t["hammer"][..., 2] - 0.035, 0.15)
    return (-2.0 * t["palm_hammer"] + 5.0 * lift - 2.0 * t["head_nail"]
            + 200.0 * r.joint("nail_dir"))


# ------------------------------------------------------------------ pen
_PEN_SITES = ("eps_ball", "object_top", "object_bottom", "target_top", "target_bottom")


def pen_terms(r: Rollout) -> dict[str, np.ndarray]:
    k = r.kinematics(sites=_PEN_SITES, bodies=("Object",))
    env = r.sim.env
    orien = (k["object_top"] - k["object_bottom"]) / getattr(env, "pen_length", 1.0)
    desired = (k["target_top"] - k["target_bottom"]) / getattr(env, "tar_length", 1.0)
    return {"pen": k["Object"], "goal_distance": _dist(k["Object"], k["eps_ball"]),
            "similarity": (orien * desired).sum(-1)}


def pen_goal(r: Rollout) -> np.ndarray:
    t = pen_terms(r)
    return (t["goal_distance"] < 0.075) & (t["similarity"] > 0.95)


def pen(r: Rollout) -> np.ndarray:
    t = pen_terms(r)
    d, s = t["goal_distance"], t["similarity"]
    close = d < 0.075
    return -d + s + 10.0 * (close & (s > 0.9)) + 50.0 * (close & (s > 0.95)) - 5.0 * (t["pen"][..., 2] < 0.075)


def pen_shaping(r: Rollout) -> np.ndarray:
    t = pen_terms(r)
    d = t["goal_distance"]
    angle = np.arccos(np.clip(t["similarity"], -1.0, 1.0))  # pen axis to target axis, radians: even slope
    return (-10.0 * d - 300.0 * np.maximum(d - 0.04, 0.0) - 10.0 * angle
            - 2.0 * np.square(r.qvel[..., -6:-3]).sum(-1) - 0.01 * np.square(r.qvel[..., -3:]).sum(-1))


# ------------------------------------------------------------------ relocate
def relocate_terms(r: Rollout) -> dict[str, np.ndarray]:
    k = r.kinematics(sites=("S_grasp", "target") + _TIPS, bodies=("Object",))
    ball = k["Object"]
    return {"ball": ball, "palm_ball": _dist(k["S_grasp"], ball), "palm_target": _dist(k["S_grasp"], k["target"]),
            "ball_target": _dist(ball, k["target"]), "tips_ball": sum(_dist(k[s], ball) for s in _TIPS) / len(_TIPS)}


def relocate_goal(r: Rollout) -> np.ndarray:
    return relocate_terms(r)["ball_target"] < 0.1


def relocate(r: Rollout) -> np.ndarray:
    t = relocate_terms(r)
    lifted = t["ball"][..., 2] > 0.04
    g = t["ball_target"]
    return (-0.1 * t["palm_ball"] + lifted * (1.0 - 0.5 * t["palm_target"] - 0.5 * g)
            + 10.0 * (g < 0.1) + 20.0 * (g < 0.05))


def relocate_shaping(r: Rollout) -> np.ndarray:
    t = relocate_terms(r)
    z = t["ball"][..., 2]
    lifted = z > 0.04
    slide = np.hypot(r.joint("OBJTx"), r.joint("OBJTy"))  # the ball pushed along the table, not carried
    return (-3.0 * t["palm_ball"] - 1.0 * t["tips_ball"] + 10.0 * np.minimum(z - 0.035, 0.1)
            - 3.0 * lifted * t["ball_target"] - 5.0 * ~lifted * slide)


GOALS = {"door": door_goal, "hammer": hammer_goal, "pen": pen_goal, "relocate": relocate_goal}
TERMS = {"door": door_terms, "hammer": hammer_terms, "pen": pen_terms, "relocate": relocate_terms}

register_task("gym:AdroitHandDoor", door, shaping=door_shaping,
              defaults={"samples": 32, "horizon": 12, "iterations": 2, "elites": 8, "knot_every": 3, "noise": 0.5},
              note="DAPG reward (palm-handle sign as the original)")
register_task("gym:AdroitHandHammer", hammer, shaping=hammer_shaping,
              defaults={"samples": 32, "horizon": 12, "iterations": 2, "elites": 8, "knot_every": 3, "noise": 0.5},
              note="DAPG reward (palm-hammer sign as the original)")
register_task("gym:AdroitHandPen", pen, shaping=pen_shaping,
              defaults={"samples": 128, "horizon": 30, "iterations": 3, "elites": 16, "knot_every": 3, "noise": 0.2})
register_task("gym:AdroitHandRelocate", relocate, shaping=relocate_shaping,
              defaults={"samples": 32, "horizon": 12, "iterations": 2, "elites": 8, "knot_every": 3, "noise": 0.5},
              note="DAPG reward (palm-ball sign as the original)")
