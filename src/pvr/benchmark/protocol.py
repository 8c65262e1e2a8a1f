"""Benchmark protocols: YAML files that fix every choice a comparison of encoders depends on.

A protocol names suites of tasks and, for each, how many demonstrations to
collect, the frames (image size, camera), frame stacking, the learner recipe,
the training length, when and how long to evaluate, the seeds and the metric.
It is data, not code: pvr ships some under ``pvr/benchmark/protocols/`` and a
user passes a path to their own. Schema (every key below; any other is an error)::

    name: my-protocol                 # shown on every table and figure
    description: one line for `pvr benchmark --list`
    seeds: [1, 2, 3]
    metric: final                     # or best (highest score over the evaluations)
    normaliser: {"DMC-*": 1000}       # env name or glob -> max return; score = return / max
    recipe: original                  # a name in pvr.bc.recipes.RECIPES
    # defaults for every suite, each overridable inside a suite:
    demonstrations: 100               # per task (collected with pvr's default expert if missing)
    keep_failures: false              # also keep episodes the expert failed (`pvr collect --keep-failures`)
    epochs: 100                       # epochs, eval_every, frame_stack(_mode): unset = the recipe's
    eval_every: 5                     # (original: its evaluation points; cortexbench: every 5)
    eval_episodes: 50
    frame_stack: 1                    # frames per observation
    frame_stack_mode: cat             # or diff
    image_size: 84                    # optional; frame height = width
    camera: 0                         # optional; DMC camera_id, HMS/MetaWorld camera_name
    env_kwargs: {}                    # more pvr.envs.make keyword arguments
    expert: null                      # default: the suite's (`pvr experts`)
    expert_kwargs: {}
    train: {}                         # any other `pvr train` flag, e.g. {batch_size: 4}
                                      # (a suite's env_kwargs / expert_kwargs / train add to these)
    suites:
      DMC:                            # a label; the report groups tasks by it
        tasks: [DMC-walker-walk]      # pvr env names; "A+B" trains A and B jointly
        demonstrations: 10            # ...any default above, for this suite only
"""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pvr.errors import PvrError

SUITE_KEYS = {"demonstrations", "keep_failures", "epochs", "eval_every", "eval_episodes", "frame_stack", "frame_stack_mode",
              "image_size", "camera", "env_kwargs", "expert", "expert_kwargs", "train"}
TOP_KEYS = {"name", "description", "seeds", "metric", "normaliser", "recipe", "suites"} | SUITE_KEYS
# None: the recipe's value (pvr.bc.recipes: epochs, evaluation schedule, frame stacking are recipe defaults)
DEFAULTS: dict[str, Any] = {"demonstrations": 100, "keep_failures": False, "epochs": None, "eval_every": None, "eval_episodes": 50,
                            "frame_stack": None, "frame_stack_mode": None, "image_size": None, "camera": None,
                            "env_kwargs": {}, "expert": None, "expert_kwargs": {}, "train": {}}
# the keyword each suite's factory takes for its camera (others have one fixed view)
CAMERA_KEY = {"DMC": "camera_id", "HMS": "camera_name", "MetaWorld": "camera_name"}
NO_IMAGE_SIZE = {"MiniGrid"}  # frame size follows from agent_view_size x tile_size there
# `pvr train` flags a protocol sets through its own keys (or the runner sets), so `train:` may not
_RESERVED_TRAIN = {"env", "embedding_name", "seed", "data_path", "save_path", "xpid", "epochs", "eval_every",
                   "num_episodes_test", "num_input_frames", "frame_stack_mode", "recipe", "num_trajectories_train",
                   "env_kwargs"}


@dataclass(frozen=True)
class Task:
    """One training task of a protocol: its settings resolved from the suite and the defaults."""

    env: str                       # `pvr train --env` value (joint tasks comma-separated)
    suite: str                     # the protocol's label
    demonstrations: int
    epochs: int | None             # None: the recipe's
    eval_every: int | None
    eval_episodes: int
    frame_stack: int | None
    frame_stack_mode: str | None
    env_kwargs: dict = field(default_factory=dict)
    expert: str | None = None
    expert_kwargs: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    keep_failures: bool = False

    @property
    def envs(self) -> list[str]:
        return self.env.split(",")


@dataclass
class Protocol:
    name: str
    description: str
    seeds: list[int]
    metric: str
    normaliser: dict[str, float | None]
    recipe: str
    tasks: list[Task]
    source: Path

    @property
    def suites(self) -> dict[str, str]:
        """env name → suite label, for the report's manifest."""
        return {env: t.suite for t in self.tasks for env in t.envs}

    def check_recipe(self) -> None:
        """The recipe must exist in this pvr; checked when the protocol runs, since recipes are plug-ins."""
        from pvr.bc.recipes import RECIPES

        if self.recipe not in RECIPES:
            raise PvrError(f"protocol {self.name!r} needs the learner recipe {self.recipe!r}, which this pvr does "
                           f"not have (available: {', '.join(sorted(RECIPES))}); update pvr or load the plug-in "
                           "that registers it with --plugin")


# -- finding protocols ------------------------------------------------------------------
def _shipped_dir():
    return resources.files("pvr.benchmark") / "protocols"


def shipped() -> dict[str, Path]:
    """Name → file of every protocol pvr ships."""
    d = _shipped_dir()
    return {Path(str(p)).stem: Path(str(p)) for p in sorted(d.iterdir(), key=lambda p: p.name)
            if p.name.endswith((".yaml", ".yml"))}


def resolve(name_or_path: str) -> Path:
    ships = shipped()
    if name_or_path in ships:
        return ships[name_or_path]
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise PvrError(f"protocol file {p} does not exist; give a YAML file or one of: {', '.join(ships)}")
        return p
    raise PvrError(f"unknown protocol {name_or_path!r}; `pvr benchmark --list` shows them ({', '.join(ships)}), "
                   "or give the path of your own .yaml file")


def describe_all() -> list[tuple[str, str]]:
    """(name, description) of every shipped protocol, for ``--list``."""
    out = []
    for name, path in shipped().items():
        try:
            out.append((name, load(path, check_envs=False).description))
        except PvrError as e:
            out.append((name, f"(invalid: {e})"))
    return out


# -- loading and validation -----------------------------------------------------------------
def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise PvrError(f"cannot read protocol {path}{at}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise PvrError(f"protocol {path} must be a YAML mapping with name, suites, seeds, ... (see pvr.benchmark."
                       "protocol for the schema)")
    return data


def _unknown(keys, allowed: set[str], where: str, path: Path) -> None:
    bad = sorted(set(keys) - allowed)
    if bad:
        raise PvrError(f"{path}: unknown key{'s' * (len(bad) > 1)} {', '.join(map(repr, bad))} in {where}; "
                       f"allowed: {', '.join(sorted(allowed))}")


def _int(v, what: str, path: Path, *, minimum: int = 1, optional: bool = False) -> int | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise PvrError(f"{path}: {what} must be an integer >= {minimum}, not {v!r}")
    return v


def _mapping(v, what: str, path: Path) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise PvrError(f"{path}: {what} must be a mapping of names to values, not {v!r}")
    return dict(v)


def _check_train(train: dict, where: str, path: Path) -> None:
    from pvr.bc.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for k in train:
        if k in _RESERVED_TRAIN:
            raise PvrError(f"{path}: train.{k} in {where} is set by the protocol itself; use its own key "
                           "(demonstrations, epochs, eval_every, eval_episodes, frame_stack, frame_stack_mode, "
                           "recipe, env_kwargs) instead")
        if k not in fields:
            close = fnmatch.filter(sorted(fields), f"*{k[:4]}*")[:3]
            raise PvrError(f"{path}: train.{k} in {where} is not a `pvr train` flag"
                           + (f" (did you mean {', '.join(close)}?)" if close else ""))


def _env_kwargs(env: str, s: dict, where: str, path: Path, check_envs: bool) -> dict:
    """The pvr.envs.make keyword arguments of one env: env_kwargs plus image_size and camera."""
    kw = dict(s["env_kwargs"])
    if s["image_size"] is None and s["camera"] is None:
        return kw
    suite = _suite_name(env) if check_envs else None
    if s["image_size"] is not None:
        size = s["image_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise PvrError(f"{path}: image_size in {where} must be an integer >= 8 (pixels), not {size!r}")
        if suite in NO_IMAGE_SIZE:
            raise PvrError(f"{path}: {env} ({suite}) has no image_size; its frame size follows from env_kwargs "
                           "agent_view_size and tile_size")
        kw["image_size"] = size
    if s["camera"] is not None:
        if check_envs and suite not in CAMERA_KEY:
            raise PvrError(f"{path}: {env} ({suite}) has one fixed camera; remove camera from {where} "
                           f"(camera is for {', '.join(sorted(CAMERA_KEY))})")
        kw[CAMERA_KEY.get(suite, "camera_name")] = s["camera"]
    return kw


def _suite_name(env: str) -> str:
    import pvr.envs

    return pvr.envs.suite_for(env).name


def load(name_or_path: str | Path, *, check_envs: bool = True) -> Protocol:
    """Read and validate a protocol; PvrError names the file, the key and what is allowed."""
    path = resolve(str(name_or_path))
    d = _read_yaml(path)
    _unknown(d, TOP_KEYS, "the protocol", path)
    name = d.get("name") or path.stem
    if not isinstance(name, str):
        raise PvrError(f"{path}: name must be a string")
    seeds = d.get("seeds", [1])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds) or len(set(seeds)) != len(seeds):
        raise PvrError(f"{path}: seeds must be a non-empty list of distinct integers, e.g. [1, 2, 3]")
    metric = d.get("metric", "final")
    if metric not in ("final", "best"):
        raise PvrError(f"{path}: metric must be final or best, not {metric!r}")
    norm = _mapping(d.get("normaliser"), "normaliser", path)
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)
               for v in norm.values()):
        raise PvrError(f"{path}: normaliser must map env names or globs to a positive max return (or null)")
    recipe = d.get("recipe", "original")
    if not isinstance(recipe, str):
        raise PvrError(f"{path}: recipe must be a recipe name such as original")
    top = {k: d.get(k, v) for k, v in DEFAULTS.items()}
    suites = d.get("suites")
    if not isinstance(suites, dict) or not suites:
        raise PvrError(f"{path}: suites must map suite labels to {{tasks: [...], ...}}, e.g. "
                       "suites: {DMC: {tasks: [DMC-walker-walk]}}")
    tasks: list[Task] = []
    for label, body in suites.items():
        where = f"suite {label!r}"
        if not isinstance(body, dict):
            raise PvrError(f"{path}: {where} must be a mapping with tasks: [...]")
        _unknown(body, SUITE_KEYS | {"tasks"}, where, path)
        s = {**top, **{k: v for k, v in body.items() if k != "tasks"}}
        names = body.get("tasks")
        if not isinstance(names, list) or not names or not all(isinstance(t, str) and t for t in names):
            raise PvrError(f"{path}: {where} needs tasks: a non-empty list of env names (`pvr envs` lists them)")
        for k in ("env_kwargs", "expert_kwargs", "train"):  # a suite's mapping adds to the protocol's
            s[k] = {**_mapping(top[k], k, path), **_mapping(body.get(k), f"{k} in {where}", path)}
        _check_train(s["train"], where, path)
        if s["frame_stack_mode"] not in (None, "cat", "diff"):
            raise PvrError(f"{path}: frame_stack_mode in {where} must be cat or diff, not {s['frame_stack_mode']!r}")
        if not isinstance(s["keep_failures"], bool):
            raise PvrError(f"{path}: keep_failures in {where} must be true or false")
        if s["expert"] is not None and not isinstance(s["expert"], str):
            raise PvrError(f"{path}: expert in {where} must be an expert name (`pvr experts`)")
        for task in names:
            envs = [e.strip() for e in task.split("+") if e.strip()]
            kws = []
            for env in envs:
                if check_envs:
                    try:
                        _suite_name(env)
                    except PvrError as e:  # unknown env: the registry's message lists suites and examples
                        raise PvrError(f"{path}: task {env!r} in {where}: {e}") from None
                kws.append(_env_kwargs(env, s, where, path, check_envs))
            if any(k != kws[0] for k in kws):
                raise PvrError(f"{path}: the envs of joint task {task!r} need the same env_kwargs")
            tasks.append(Task(
                env=",".join(envs), suite=str(label),
                demonstrations=_int(s["demonstrations"], f"demonstrations in {where}", path),
                epochs=_int(s["epochs"], f"epochs in {where}", path, optional=True),
                eval_every=_int(s["eval_every"], f"eval_every in {where}", path, optional=True),
                eval_episodes=_int(s["eval_episodes"], f"eval_episodes in {where}", path),
                frame_stack=_int(s["frame_stack"], f"frame_stack in {where}", path, optional=True),
                frame_stack_mode=s["frame_stack_mode"], env_kwargs=kws[0], expert=s["expert"],
                expert_kwargs=s["expert_kwargs"], train=s["train"], keep_failures=s["keep_failures"]))
    dup = sorted({t.env for t in tasks if [u.env for u in tasks].count(t.env) > 1})
    if dup:
        raise PvrError(f"{path}: task {dup[0]} is listed twice")
    description = d.get("description") or ""
    return Protocol(name, " ".join(str(description).split()), list(seeds), metric,
                    {k: None if v is None else float(v) for k, v in norm.items()}, recipe, tasks, path)
