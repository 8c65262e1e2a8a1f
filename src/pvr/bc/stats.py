"""Per-epoch statistics: ``stats.jsonl`` (the record reports read), TensorBoard, W&B.

JSONL is the source of truth (fsynced line by line; a torn last line is ignored
on reading). TensorBoard event files go to ``<run>/tensorboard``; W&B is used
only when asked for (``--wandb``) and installed.
"""
from __future__ import annotations

import json
from pathlib import Path

from pvr.errors import PvrError
from pvr.utils.io import append_jsonl, atomic_path, read_jsonl


class StatsLog:
    def __init__(self, run_dir: Path, *, tensorboard: bool = True, wandb_project: str | None = None,
                 config: dict | None = None):
        self.path = run_dir / "stats.jsonl"
        self.rows: dict[int, dict] = {r["epoch"]: r for r in read_jsonl(self.path)}
        self._tb = None
        self._wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise PvrError("--wandb needs the wandb package: pip install wandb (or drop --wandb)") from None
            self._wandb = wandb.init(project=wandb_project, name=run_dir.name, config=config, dir=str(run_dir),
                                     id=run_dir.name.replace("/", "_"), resume="allow")

    def truncate_after(self, epoch: int) -> None:
        """Forget rows past ``epoch`` (a resumed run recomputes them)."""
        self.rows = {e: r for e, r in self.rows.items() if e <= epoch}
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(self.rows[e], sort_keys=True) + "\n" for e in sorted(self.rows)))

    def __contains__(self, epoch: int) -> bool:
        return epoch in self.rows

    def write(self, row: dict) -> None:
        self.rows[row["epoch"]] = row
        append_jsonl(self.path, row)
        e = row["epoch"]
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
