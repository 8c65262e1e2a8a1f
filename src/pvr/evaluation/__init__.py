"""Parallel evaluation: batched rollouts in vectorised environments, in a worker process."""
from pvr.evaluation.rollout import evaluate
from pvr.evaluation.worker import EvalWorker

__all__ = ["evaluate", "EvalWorker"]
