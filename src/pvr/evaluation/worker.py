"""Evaluation in a separate process, in parallel with training.

One worker process holds one encoder, one policy and the evaluation environments
for the whole run (no model copy per environment). The trainer ``submit``s the
policy weights of an epoch (serialised bytes, so training can keep updating its
own tensors) and later collects ``result()``. The worker dies with its parent,
SIGKILL included.

Threads: the worker's encoder runs on its share of the cores (``spec["threads"]``),
or on the count ``submit`` gives for one evaluation (the trainer gives all cores to the
final one); a fixed count per evaluation keeps its results reproducible bit for bit
(features computed on more threads round differently). With ``spec["threads_waited"]``
(``--adaptive_threads``) it also runs on that many while the trainer is blocked in
``result()`` waiting for it: a flag in shared memory says so, and the worker reads it
before each encoder call. A second flag, ``evaluating()``, tells the trainer when the
worker is done, so that an adaptive trainer can train on every core until the next
evaluation.

Stopping: the worker ends on SIGTERM by closing its env processes and exiting
normally, so the named semaphores its ``AsyncVectorEnv``s created are released and
Python's resource tracker has nothing left to warn about ("leaked semaphore
objects"). ``close(now=True)`` (Ctrl-C, errors in the trainer) sends SIGTERM, and
Linux sends it too when the trainer dies, SIGKILL included; SIGKILL follows only
if the worker has not ended within :data:`STOP_GRACE` seconds.
"""
from __future__ import annotations

import atexit
import io
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

from pvr.errors import PvrError
from pvr.utils import interrupt

#: seconds a worker asked to stop (SIGTERM) may take to close its env processes before it is killed
STOP_GRACE = 10.0


class _Stop(BaseException):
    """Raised in the worker by SIGTERM: unwind, close the env processes, exit normally."""


def _on_sigterm(signum, frame) -> None:
    # the watchdog ends the process should unwinding hang (e.g. an env process that never answers)
    watchdog = threading.Timer(STOP_GRACE, os._exit, args=(143,))
    watchdog.daemon = True  # a normal exit does not wait for it
    watchdog.start()
    # Later SIGTERMs are ignored: when the trainer dies, Linux sends the parent-death signal once per
    # thread of the trainer that exits (each thread in turn becomes the "parent"), so a second SIGTERM
    # usually arrives while this one is still closing the env processes; dying of it would skip the
    # semaphore cleanup. The watchdog above still bounds the stop, and SIGKILL always works.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Stop


def _serialise(weights: dict[str, dict]) -> bytes:
    """{"policy": state_dict, ["encoder": state_dict]} → bytes, detached copies on the CPU."""
    buf = io.BytesIO()
    torch.save({part: {k: v.detach().cpu() for k, v in sd.items()} for part, sd in weights.items()}, buf)
    return buf.getvalue()


def _worker_main(spec: dict, requests, results, parent_pid: int, waited=None, evaluating=None) -> None:
    from pvr.evaluation.vector import die_with_owner
    from pvr.utils.procs import thread_lock_for_progress_bars

    # SIGTERM, not SIGKILL, when the trainer dies: the worker then releases its semaphores on the way out
    signal.signal(signal.SIGTERM, _on_sigterm)
    die_with_owner(parent_pid, signal.SIGTERM)
    thread_lock_for_progress_bars()
    # The trainer owns this process's lifetime. Slurm (submitit's --signal=USR2) signals every process of
    # the job before a timeout or preemption, and Ctrl-C reaches the whole process group: by default either
    # would kill the worker mid-evaluation while the trainer is still checkpointing.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(spec.get("threads", 1))
    envs: dict = {}
    try:
        import pvr.envs
        import pvr.plugins
        from pvr.bc.policy import ActionSpec, Policy
        from pvr.bc.stacking import proprio_dims

        pvr.plugins.load(spec.get("plugins", []))
        from pvr.embed import make_encoder
        from pvr.evaluation.rollout import apply_eval_runtime, evaluate, pipeline_by_default
        from pvr.evaluation.vector import default_num_envs, make_slots

        encoder = make_encoder(spec["embedding_name"], seed=spec.get("encoder_seed"), **spec["encoder_kwargs"])
        if encoder.fingerprint != spec["fingerprint"]:
            raise PvrError(f"encoder {spec['embedding_name']} in the evaluation process has fingerprint "
                           f"{encoder.fingerprint}, but training used {spec['fingerprint']}: its weights or "
                           "preprocessing changed")
        device = torch.device(spec.get("device", "cpu"))
        runtime = spec.get("runtime", "torch")
        if runtime == "auto" and device.type != "cpu":
            runtime = "torch"  # the fastest on a GPU
        if runtime != "torch" and device.type != "cpu":
            raise PvrError(f"--runtime {runtime} runs encoders on a CPU, but evaluation runs on {device}: "
                           "use --runtime torch (or --disable_cuda)")
        encoder.to(device)
        if runtime != "torch":
            apply_eval_runtime(encoder, runtime, spec["envs"][0], spec["env_kwargs"][spec["envs"][0]],
                               threads=spec.get("threads", 1))
        policy = Policy(spec["obs_dim"], ActionSpec.from_dict(spec["action"]), **spec["policy_kwargs"]).to(device)
        skips, skip_mode = int(spec.get("frame_skips", 1)), spec.get("frame_skip_mode", "last")
        # the env processes (one per slot, kept for the whole run) are started once, here
        num_envs = min(spec.get("num_envs") or default_num_envs(spec["episodes"]), max(spec["episodes"], 1))
        pipeline = spec.get("pipeline")
        if pipeline is None:
            pipeline = pipeline_by_default(encoder)
        for name in spec["envs"]:
            envs[name] = make_slots(name, num_envs, spec["env_kwargs"][name], skips, skip_mode,
                                    parallel=spec.get("parallel", True), plugins=spec.get("plugins", []),
                                    pipeline=pipeline)
        results.send(("ready", None, None))
    except _Stop:
        _stop(envs, results)
        return
    except BaseException as e:  # report, then exit
        results.send(("error", None, _describe(e)))
        _close(envs, terminate=True)
        return
    stopping = False
    try:
        while True:
            msg = requests.recv()
            if msg is None:
                break
            epoch, blob, fixed = msg
            started = time.perf_counter()
            try:
                weights = torch.load(io.BytesIO(blob), weights_only=True, map_location=device)
                policy.load_state_dict(weights["policy"])
                if "encoder" in weights:  # fine-tuned encoder: its weights change every epoch
                    encoder.load_state_dict(weights["encoder"])
                out, used = {}, []

                def threads() -> int:
                    """This evaluation's count (or the share); with threads_waited, more while the trainer waits."""
                    n = fixed or spec.get("threads", 1)
                    if waited is not None and waited.value:
                        n = max(n, spec.get("threads_waited") or n)
                    if not used or used[-1][0] != n:
                        used.append([n, 0])
                    used[-1][1] += 1
                    return n

                for name, slots in envs.items():
                    out[name] = evaluate(policy, encoder, name, episodes=spec["episodes"], seed=spec["seed"],
                                         num_envs=num_envs, num_input_frames=spec["num_input_frames"],
                                         frame_stack_mode=spec["frame_stack_mode"], envs=slots,
                                         proprio_dims=proprio_dims(name) if spec.get("proprio") else 0,
                                         desc=f"{name} @ {epoch}", progress=spec.get("progress", True),
                                         threads=threads)
                if evaluating is not None:
                    evaluating.value = 0  # the trainer may take every core from now on
                results.send(("result", epoch, (out, time.perf_counter() - started, used)))
            except _Stop:
                raise
            except BaseException as e:
                if evaluating is not None:
                    evaluating.value = 0
                results.send(("error", epoch, _describe(e)))
                return
    except _Stop:
        stopping = True
        _stop(envs, results)
    finally:
        if not stopping:
            try:
                _close(envs)
            except _Stop:  # asked to stop while closing (the trainer saw an error): stop now, quietly
                _stop(envs, results)


def _close(envs: dict, terminate: bool = False) -> None:
    for slots in envs.values():
        try:
            if terminate and hasattr(slots, "pids"):
                slots.close(terminate=True)
            else:
                slots.close()
        except Exception:  # noqa: BLE001 — closing the others matters more
            pass


def _stop(envs: dict, results) -> None:
    """Asked to stop: end the env processes at once (nobody reads the results any more), release what
    multiprocessing registered, and exit without the interpreter's teardown.

    ``multiprocessing.util._exit_function`` is what a process started by multiprocessing runs when its
    target returns: it runs the finalizers that unlink this process's named semaphores (the env groups'
    queues) and unregister them from the resource tracker. What would follow it, the interpreter's
    teardown with torch loaded, took 1 s on a quiet 2-core machine and several on a loaded one, during
    which a stopped evaluation still looked alive; nothing in it is needed here."""
    from multiprocessing import util

    _close(envs, terminate=True)
    envs.clear()
    util._exit_function()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 — a closed stream must not keep the process alive
            pass
    os._exit(0)


def _describe(e: BaseException) -> str:
    if isinstance(e, PvrError):
        return str(e)
    return f"{type(e).__name__}: {e}\n{traceback.format_exc()}"


class EvalWorker:
    """Handle to the evaluation process. Use as a context manager so it is always closed."""

    def __init__(self, spec: dict, run_dir: str | os.PathLike | None = None):
        """``run_dir``: where each evaluation's wall time is recorded (:mod:`pvr.evaluation.timing`)."""
        self.run_dir = None if run_dir is None else Path(run_dir)
        ctx = mp.get_context("spawn")
        # pipes, not queues: a Queue holds named semaphores, which a SIGKILLed trainer could not release
        requests_in, self._requests = ctx.Pipe(duplex=False)
        self._results, results_out = ctx.Pipe(duplex=False)
        # Not a daemon: a daemon may not start children, and the worker starts one process per evaluation
        # env. It still cannot outlive this process: Linux kills it when this one dies (die_with_parent),
        # and an interpreter exiting without close() kills it first instead of waiting for it.
        # set while this process blocks in result(): the worker then uses spec["threads_waited"] threads.
        # A raw shared byte (an anonymous mapping): no lock, so no named semaphore to leak.
        self._waited = ctx.RawValue("b", 0)
        # set by submit(), cleared by the worker as it finishes: whether an evaluation is using its cores now
        self._evaluating = ctx.RawValue("b", 0)
        self.proc = ctx.Process(target=_worker_main,
                                args=(spec, requests_in, results_out, os.getpid(), self._waited,
                                      self._evaluating),
                                daemon=False, name="pvr-eval")
        self.proc.start()
        requests_in.close()  # the worker's ends: once it is gone, reading the results says so (EOF)
        results_out.close()
        atexit.register(self._kill_at_exit)
        self.in_flight: int | None = None
        self._wait("ready")

    def _get(self, timeout: float | None = None):
        while True:
            interrupt.check()
            try:
                if self._results.poll(1.0 if timeout is None else timeout):
                    return self._results.recv()
            except (EOFError, OSError):
                pass  # the worker is gone: said below
            if not self.proc.is_alive():
                self.proc.join(timeout=1)
                raise RuntimeError(f"the evaluation process died (exit code {self.proc.exitcode})") from None
            if timeout is not None:
                raise queue.Empty

    def _wait(self, kind: str):
        tag, epoch, payload = self._get()
        if tag == "error":
            raise PvrError(f"evaluation failed: {payload}")
        assert tag == kind, (tag, kind)
        return epoch, payload

    def _finish(self, epoch: int, payload: tuple[dict, float, list]) -> tuple[int, dict]:
        assert epoch == self.in_flight, (epoch, self.in_flight)
        out, seconds, threads = payload
        self.in_flight = None
        self.last_seconds = seconds
        self.last_threads = [tuple(t) for t in threads]  # [(threads, encoder calls), ...] in the order used
        if self.run_dir is not None:
            from pvr.evaluation import timing

            timing.record(self.run_dir, "evaluate", epoch, seconds)
        return epoch, out

    def submit(self, epoch: int, weights: dict[str, dict], threads: int | None = None) -> None:
        """Evaluate ``{"policy": state_dict[, "encoder": state_dict]}`` as epoch ``epoch``, with the
        encoder on ``threads`` threads (default: the spec's share) for the whole evaluation."""
        assert self.in_flight is None, "one evaluation at a time"
        self._evaluating.value = 1
        self._requests.send((epoch, _serialise(weights), threads))
        self.in_flight = epoch

    def busy(self) -> bool:
        """Whether an evaluation was submitted and its result not yet collected."""
        return self.in_flight is not None

    def evaluating(self) -> bool:
        """Whether the worker is evaluating now (False as soon as it finishes, before ``result()``)."""
        return bool(self._evaluating.value) and self.proc.is_alive()

    def result(self, block: bool = True) -> tuple[int, dict] | None:
        """The in-flight evaluation's (epoch, {env: stats}); waits for it unless ``block=False``
        (then None while it is still running)."""
        if not block:
            try:
                tag, epoch, out = self._get(timeout=0)
            except queue.Empty:
                return None
            if tag == "error":
                raise PvrError(f"evaluation failed: {out}")
            return self._finish(epoch, out)
        self._waited.value = 1  # nothing to do here until it is done: the worker may use every core
        try:
            return self._finish(*self._wait("result"))
        finally:
            self._waited.value = 0

    def _stop_now(self) -> None:
        """SIGTERM (the worker closes its env processes and exits), SIGKILL if it has not within the grace."""
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=STOP_GRACE + 2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)

    def _kill_at_exit(self) -> None:
        self._stop_now()

    def close(self, *, now: bool = False) -> None:
        """Stop the worker: politely after its current job, or at once (``now``, on errors and Ctrl-C)."""
        atexit.unregister(self._kill_at_exit)
        if now:
            self._stop_now()
        if self.proc.is_alive():
            try:
                self._requests.send(None)
            except (OSError, ValueError):
                pass
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self._requests.close()
        self._results.close()

    def __enter__(self) -> "EvalWorker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(now=exc_type is not None)
