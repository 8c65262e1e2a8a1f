"""The callable that a Slurm job runs: one ``pvr train`` run, requeued on preemption.

Why requeuing is this simple: the trainer checkpoints atomically after every
epoch and, given a run directory, resumes from its newest complete checkpoint
(or does nothing if the run is finished). So when Slurm announces preemption or
the time limit (submitit turns that into ``SIGUSR2``), ``checkpoint()`` only has
to resubmit the *same* call; no state needs to travel in the pickle.
"""
from __future__ import annotations

import os

import submitit

from pvr.bc.config import TrainConfig


class TrainJob(submitit.helpers.Checkpointable):
    """``TrainJob(plugins, cwd)(cfg)`` trains ``cfg`` inside a submitit job and returns its run directory.

    ``cwd`` is the directory the job was submitted from: relative ``--data_path``
    and ``--save_path`` keep their meaning (they are stored as given in the run's
    ``config.json``, which a resubmission must match). ``plugins`` are the
    ``--plugin`` modules loaded at submission, imported again in the job.
    """

    def __init__(self, plugins: list[str] | None = None, cwd: str | None = None):
        self.plugins = list(plugins or [])
        self.cwd = cwd or os.getcwd()

    def __call__(self, cfg: TrainConfig) -> str:
        import pvr.plugins
        from pvr.bc.trainer import train

        os.chdir(self.cwd)
        pvr.plugins.load(self.plugins)
        if not cfg.train_embedding:
            embed_first(cfg)
        return str(train(cfg, progress=False))

    def checkpoint(self, cfg: TrainConfig) -> submitit.helpers.DelayedSubmission:
        # Called by submitit's SIGUSR2 handler just before the job is requeued.
        # The run directory already holds the last completed epoch; the new job resumes from it.
        return submitit.helpers.DelayedSubmission(TrainJob(self.plugins, self.cwd), cfg)


def embed_first(cfg: TrainConfig, *, progress: bool = False) -> None:
    """Embed the datasets a run needs, waiting for a concurrent job that is embedding the same ones.

    The runs of a sweep that share an (environment, encoder) start together; the
    first embeds, the others wait for it and reuse its features, instead of
    failing on the embedding lock as a plain ``pvr train`` would.
    """
    from pvr.embed import embed, find_features, make_encoder, open_dataset

    for env in cfg.envs:
        with open_dataset(cfg.data_path, env) as ds:
            encoder = make_encoder(cfg.embedding_name, ds, seed=cfg.seed)
            if find_features(ds, encoder) is not None:
                continue
        with open_dataset(cfg.data_path, env, mode="a") as wds:
            embed(wds, encoder, wait=True, progress=progress)
