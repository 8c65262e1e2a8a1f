"""Evaluate a finished (or interrupted) run from its saved policy: ``pvr evaluate RUN_DIR``."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from pvr.bc.policy import ActionSpec, Policy
from pvr.bc.stacking import proprio_dims
from pvr.embed import make_encoder
from pvr.errors import PvrError
from pvr.evaluation.rollout import apply_eval_runtime, evaluate


def load_policy(run_dir: str | Path) -> tuple[Policy, dict]:
    run_dir = Path(run_dir)
    final = run_dir / "policy.pt"
    if final.exists():
        saved = torch.load(final, map_location="cpu", weights_only=True)
        meta = saved
    else:
        from pvr.bc import checkpoint

        ckpt = checkpoint.load(run_dir)
        if ckpt is None or not (run_dir / "run.json").exists():
            raise PvrError(f"{run_dir} has neither policy.pt nor a checkpoint; is it a pvr run directory?")
        meta = json.loads((run_dir / "run.json").read_text())
        meta = {"policy": ckpt["policy"], **({"encoder": ckpt["encoder"]} if "encoder" in ckpt else {}),
                "obs_dim": meta["facts"]["obs_dim"], "action": meta["action"],
                "policy_kwargs": meta["policy_kwargs"], "encoder_kwargs": meta["facts"]["encoder_kwargs"],
                "fingerprint": meta["facts"]["fingerprint"]}
    policy = Policy(meta["obs_dim"], ActionSpec.from_dict(meta["action"]), **meta["policy_kwargs"])
    policy.load_state_dict(meta["policy"])
    return policy, meta


def evaluate_run(run_dir: str | Path, *, episodes: int = 50, envs: str | None = None, seed: int | None = None,
                 num_envs: int = 8, progress: bool = True, videos: int = 0,
                 runtime: str = "torch") -> dict[str, dict]:
    """Evaluate a run's saved policy; ``videos=N`` writes N episodes per env to ``<run>/videos/``.

    ``runtime`` (auto, torch, onnxruntime, openvino) runs a frozen encoder's backbone with that runtime
    (:mod:`pvr.encoders.runtime`; features checked against torch's first)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise PvrError(f"{run_dir} is not a run directory (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    policy, meta = load_policy(run_dir)
    encoder = make_encoder(cfg["embedding_name"], seed=cfg.get("seed"), **meta["encoder_kwargs"])
    if "encoder" in meta:  # fine-tuned with the policy
        encoder.load_state_dict(meta["encoder"])
    elif encoder.fingerprint != meta["fingerprint"]:
        raise PvrError(f"encoder {cfg['embedding_name']} now has fingerprint {encoder.fingerprint}, but the run "
                       f"was trained on {meta['fingerprint']}: its weights or preprocessing changed")
    run_info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    names = [e for e in (envs or cfg["env"]).split(",") if e]
    if runtime != "torch":
        if "encoder" in meta and runtime != "auto":
            raise PvrError(f"--runtime {runtime} runs a frozen encoder; this run fine-tuned its encoder: "
                           "use --runtime torch")
        if "encoder" not in meta:
            apply_eval_runtime(encoder, runtime, names[0], run_info.get("env_kwargs", {}).get(names[0], {}))
    out = {}
    for name in names:
        kwargs = run_info.get("env_kwargs", {}).get(name, {})
        out[name] = evaluate(policy, encoder, name, episodes=episodes, num_envs=num_envs, env_kwargs=kwargs,
                             seed=cfg["seed"] * 1_000_003 if seed is None else seed,
                             num_input_frames=cfg["num_input_frames"], frame_stack_mode=cfg["frame_stack_mode"],
                             progress=progress, videos=videos, video_dir=run_dir / "videos",
                             frame_skips=int(cfg.get("frame_skips", 1)),
                             frame_skip_mode=cfg.get("frame_skip_mode", "last"),
                             proprio_dims=proprio_dims(name) if cfg.get("proprio") else 0)
    return out
