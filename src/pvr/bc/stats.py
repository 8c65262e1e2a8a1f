"""Per-epoch statistics: ``stats.jsonl`` (the record reports read), TensorBoard, W&B.

JSONL is the source of truth (fsynced line by line; a torn last line is ignored
on reading), kept in epoch order: an evaluation row that arrives after later
epochs' rows rewrites the file (atomically) in order, so an interrupted and
resumed run leaves the same file as an uninterrupted one. Without a run
directory (``--disable_save``) rows are kept in memory only. TensorBoard event files go to ``<run>/tensorboard``; W&B is used
only when asked for (``--wandb``) and installed.
"""
from __future__ import annotations

import json
from pathlib import Path

from pvr.errors import PvrError
from pvr.utils.io import append_jsonl, atomic_path, read_jsonl


class StatsLog:
    def __init__(self, run_dir: Path | None, *, tensorboard: bool = True, wandb_project: str | None = None,
                 config: dict | None = None):
        self.path = run_dir / "stats.jsonl" if run_dir is not None else None
        self.rows: dict[int, dict] = {r["epoch"]: r for r in read_jsonl(self.path)} if self.path else {}
        self._tb = None
        self._wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard")) if run_dir is not None else None
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise PvrError("--wandb needs the wandb package: pip install wandb (or drop --wandb)") from None
            kw = dict(name=run_dir.name, dir=str(run_dir), id=run_dir.name.replace("/", "_"), resume="allow") \
                if run_dir is not None else {}
            self._wandb = wandb.init(project=wandb_project, config=config, **kw)

    def truncate_after(self, epoch: int) -> None:
        """Forget rows past ``epoch`` (a resumed run recomputes them)."""
        self.rows = {e: r for e, r in self.rows.items() if e <= epoch}
        self._rewrite()

    def _rewrite(self) -> None:
        if self.path is None:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(self.rows[e], sort_keys=True) + "\n" for e in sorted(self.rows)))

    def __contains__(self, epoch: int) -> bool:
        return epoch in self.rows

    def write(self, row: dict) -> None:
        e = row["epoch"]
        in_order = all(k < e for k in self.rows)
        self.rows[e] = row
        if self.path is not None and in_order:
            append_jsonl(self.path, row)
        elif self.path is not None:
            self._rewrite()
        scalars = {}
        if row.get("training_loss") is not None:
            scalars["train/loss"] = row["training_loss"]
            scalars["train/gradient_norm"] = row["gradient_norm"]
        for env, r in (row.get("test") or {}).items():
            scalars[f"test/{env}/return"] = r["return"]
            scalars[f"test/{env}/success"] = r["success"]
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, e)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({**scalars, "epoch": e}, step=e)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
