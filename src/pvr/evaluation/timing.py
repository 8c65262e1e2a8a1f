"""Wall time of each stage of a study, kept where the stage writes its results, for ``pvr report``.

- collect: ``collect_seconds`` in the dataset store's meta (``pvr collect``), summed over the
  sessions that filled it (a resumed collection adds its own time);
- embed: ``embed_seconds`` in the attrs of the feature array of one encoder (``pvr embed``),
  summed over sessions and shards (the encoding itself, not time spent waiting for a lock);
- train and evaluate: ``stage_times.jsonl`` in the run directory, one line per epoch trained
  (by the trainer) and per evaluation point (measured in the evaluation process):
  ``{"stage": "train"|"evaluate", "epoch": e, "seconds": s}``. An epoch redone after a
  resume replaces its earlier line, so the totals are those of the run as it stands.

Collect and embed are properties of a dataset, shared by every run trained on it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

STAGE_TIMES = "stage_times.jsonl"
COLLECT_META = "collect_seconds"
EMBED_ATTR = "embed_seconds"
RUN_STAGES = ("train", "evaluate")


def record(run_dir: str | os.PathLike, stage: str, epoch: int, seconds: float) -> None:
    """Append one stage time to ``run_dir``'s log (one small line: a kill loses at most that line)."""
    with open(Path(run_dir) / STAGE_TIMES, "a") as f:
        f.write(json.dumps({"stage": stage, "epoch": int(epoch), "seconds": round(float(seconds), 3)}) + "\n")


def run_totals(run_dir: str | os.PathLike) -> dict[str, float]:
    """Seconds per stage recorded in ``run_dir`` (only the stages that have a line)."""
    path = Path(run_dir) / STAGE_TIMES
    if not path.exists():
        return {}
    latest: dict[tuple[str, int], float] = {}
    for line in path.read_text().splitlines():
        try:
            d = json.loads(line)
            latest[(str(d["stage"]), int(d["epoch"]))] = float(d["seconds"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line left by a kill
    out: dict[str, float] = {}
    for (stage, _), s in latest.items():
        out[stage] = out.get(stage, 0.0) + s
    return out


def dataset_totals(ds, embedding_name: str, fingerprint: str | None = None) -> dict[str, float]:
    """``collect`` and ``embed`` seconds recorded in an open dataset store for one encoder (the features
    of ``fingerprint`` when given; otherwise the most recently embedded features of that encoder)."""
    out: dict[str, float] = {}
    collect = (getattr(ds, "meta", None) or {}).get(COLLECT_META)
    if isinstance(collect, (int, float)):
        out["collect"] = float(collect)
    group = getattr(ds, "group", None)
    try:
        arrays = list(group["features"].arrays()) if group is not None and "features" in group else []
    except Exception:  # noqa: BLE001 — a store whose features cannot be listed only loses the embed time
        arrays = []
    seconds = [float(a.attrs[EMBED_ATTR]) for _, a in arrays
               if a.attrs.get("encoder") == embedding_name and isinstance(a.attrs.get(EMBED_ATTR), (int, float))
               and (fingerprint is None or a.attrs.get("fingerprint") == fingerprint)]
    if seconds:
        out["embed"] = seconds[-1]
    return out
