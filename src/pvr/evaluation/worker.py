"""Evaluation in a separate process, in parallel with training.

One worker process holds one encoder, one policy and the evaluation environments
for the whole run (no model copy per environment). The trainer ``submit``s the
policy weights of an epoch (serialised bytes, so training can keep updating its
own tensors) and later collects ``result()``. The worker dies with its parent,
SIGKILL included.
"""
from __future__ import annotations

import atexit
import io
import multiprocessing as mp
import os
import queue
import signal
import traceback

import torch

from pvr.errors import PvrError
from pvr.utils import interrupt


def _serialise(weights: dict[str, dict]) -> bytes:
    """{"policy": state_dict, ["encoder": state_dict]} → bytes, detached copies on the CPU."""
    buf = io.BytesIO()
    torch.save({part: {k: v.detach().cpu() for k, v in sd.items()} for part, sd in weights.items()}, buf)
    return buf.getvalue()


def _worker_main(spec: dict, requests, results, parent_pid: int) -> None:
    from pvr.utils.procs import die_with_parent, thread_lock_for_progress_bars

    die_with_parent(parent_pid)
    thread_lock_for_progress_bars()
    # The trainer owns this process's lifetime. Slurm (submitit's --signal=USR2) signals every process of
    # the job before a timeout or preemption, and Ctrl-C reaches the whole process group: by default either
    # would kill the worker mid-evaluation while the trainer is still checkpointing.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(spec.get("threads", 1))
    try:
        import pvr.envs
        import pvr.plugins
        from pvr.bc.policy import ActionSpec, Policy
        from pvr.bc.stacking import proprio_dims

        pvr.plugins.load(spec.get("plugins", []))
        from pvr.embed import make_encoder
        from pvr.evaluation.rollout import evaluate
        from pvr.evaluation.vector import default_num_envs, make_slots

        encoder = make_encoder(spec["embedding_name"], seed=spec.get("encoder_seed"), **spec["encoder_kwargs"])
        if encoder.fingerprint != spec["fingerprint"]:
            raise PvrError(f"encoder {spec['embedding_name']} in the evaluation process has fingerprint "
                           f"{encoder.fingerprint}, but training used {spec['fingerprint']}: its weights or "
                           "preprocessing changed")
        device = torch.device(spec.get("device", "cpu"))
        encoder.to(device)
        policy = Policy(spec["obs_dim"], ActionSpec.from_dict(spec["action"]), **spec["policy_kwargs"]).to(device)
        skips, skip_mode = int(spec.get("frame_skips", 1)), spec.get("frame_skip_mode", "last")
        # the env processes (one per slot, kept for the whole run) are started once, here
        num_envs = min(spec.get("num_envs") or default_num_envs(spec["episodes"]), max(spec["episodes"], 1))
        envs = {}
        for name in spec["envs"]:
            envs[name] = make_slots(name, num_envs, spec["env_kwargs"][name], skips, skip_mode,
                                    parallel=spec.get("parallel", True), plugins=spec.get("plugins", []))
        results.put(("ready", None, None))
    except BaseException as e:  # report, then exit
        results.put(("error", None, _describe(e)))
        return
    try:
        while True:
            msg = requests.get()
            if msg is None:
                break
            epoch, blob = msg
            try:
                weights = torch.load(io.BytesIO(blob), weights_only=True, map_location=device)
                policy.load_state_dict(weights["policy"])
                if "encoder" in weights:  # fine-tuned encoder: its weights change every epoch
                    encoder.load_state_dict(weights["encoder"])
                out = {}
                for name, slots in envs.items():
                    out[name] = evaluate(policy, encoder, name, episodes=spec["episodes"], seed=spec["seed"],
                                         num_envs=num_envs, num_input_frames=spec["num_input_frames"],
                                         frame_stack_mode=spec["frame_stack_mode"], envs=slots,
                                         proprio_dims=proprio_dims(name) if spec.get("proprio") else 0,
                                         desc=f"{name} @ {epoch}", progress=spec.get("progress", True))
                results.put(("result", epoch, out))
            except BaseException as e:
                results.put(("error", epoch, _describe(e)))
                return
    finally:
        for slots in envs.values():
            slots.close()


def _describe(e: BaseException) -> str:
    if isinstance(e, PvrError):
        return str(e)
    return f"{type(e).__name__}: {e}\n{traceback.format_exc()}"


class EvalWorker:
    """Handle to the evaluation process. Use as a context manager so it is always closed."""

    def __init__(self, spec: dict):
        ctx = mp.get_context("spawn")
        self._requests = ctx.Queue()
        self._results = ctx.Queue()
        # Not a daemon: a daemon may not start children, and the worker starts one process per evaluation
        # env. It still cannot outlive this process: Linux kills it when this one dies (die_with_parent),
        # and an interpreter exiting without close() kills it first instead of waiting for it.
        self.proc = ctx.Process(target=_worker_main, args=(spec, self._requests, self._results, os.getpid()),
                                daemon=False, name="pvr-eval")
        self.proc.start()
        atexit.register(self._kill_at_exit)
        self.in_flight: int | None = None
        self._wait("ready")

    def _get(self, timeout: float | None = None):
        while True:
            interrupt.check()
            try:
                return self._results.get(timeout=1.0 if timeout is None else timeout)
            except queue.Empty:
                if not self.proc.is_alive():
                    raise RuntimeError(f"the evaluation process died (exit code {self.proc.exitcode})") from None
                if timeout is not None:
                    raise

    def _wait(self, kind: str):
        tag, epoch, payload = self._get()
        if tag == "error":
            raise PvrError(f"evaluation failed: {payload}")
        assert tag == kind, (tag, kind)
        return epoch, payload

    def submit(self, epoch: int, weights: dict[str, dict]) -> None:
        """Evaluate ``{"policy": state_dict[, "encoder": state_dict]}`` as epoch ``epoch``."""
        assert self.in_flight is None, "one evaluation at a time"
        self._requests.put((epoch, _serialise(weights)))
        self.in_flight = epoch

    def busy(self) -> bool:
        return self.in_flight is not None

    def result(self, block: bool = True) -> tuple[int, dict] | None:
        """The in-flight evaluation's (epoch, {env: stats}); waits for it unless ``block=False``
        (then None while it is still running)."""
        if not block:
            try:
                tag, epoch, out = self._results.get_nowait()
            except queue.Empty:
                return None
            if tag == "error":
                raise PvrError(f"evaluation failed: {out}")
            assert epoch == self.in_flight, (epoch, self.in_flight)
            self.in_flight = None
            return epoch, out
        epoch, out = self._wait("result")
        assert epoch == self.in_flight, (epoch, self.in_flight)
        self.in_flight = None
        return epoch, out

    def _kill_at_exit(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)

    def close(self, *, now: bool = False) -> None:
        """Stop the worker: politely after its current job, or at once (``now``, on errors and Ctrl-C)."""
        atexit.unregister(self._kill_at_exit)
        if self.proc.is_alive() and now:
            self.proc.kill()
        if self.proc.is_alive():
            try:
                self._requests.put(None)
            except (OSError, ValueError):
                pass
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self._requests.cancel_join_thread()
        self._results.cancel_join_thread()

    def __enter__(self) -> "EvalWorker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(now=exc_type is not None)
