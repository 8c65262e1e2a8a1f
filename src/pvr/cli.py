"""``pvr <stage>``: one thin sub-command per pipeline stage.

Each sub-command parses flags (the original's names where it had them) and calls
the library. A :class:`PvrError` is printed as one line, without a traceback,
and the exit status is 2.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys

import pvr.plugins
from pvr.errors import PvrError
from pvr.utils import interrupt


# pvr.encoders.runtime.CHOICES, restated so that building the parser imports no torch
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")

def _json_dict(text: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise PvrError(f"expected a JSON object such as '{{\"max_steps\": 64}}': {e}") from None
    if not isinstance(value, dict):
        raise PvrError("expected a JSON object such as '{\"max_steps\": 64}'")
    return value


# -- stages -----------------------------------------------------------------------
def cmd_collect(a) -> None:
    from pvr.collect import collect

    path = collect(a.env, a.episodes, a.data_path, expert=a.expert, seed=a.seed, keep_failures=a.keep_failures,
                   env_kwargs=_json_dict(a.env_kwargs), expert_kwargs=_json_dict(a.expert_kwargs),
                   workers=a.workers, progress=not a.quiet)
    print(path)


def cmd_embed(a) -> None:
    from pvr.embed import embed, find_features, make_encoder, open_dataset, parse_shard

    from pvr.embed import embed_on_devices, parse_batch_size, parse_devices

    shard = parse_shard(a.shard)
    devices = parse_devices(a.devices)
    if devices and shard:
        raise PvrError("--devices runs its own shards (one per device); drop --shard, or drop --devices")
    batch = parse_batch_size(a.batch_size)
    for env in [e for e in a.env.split(",") if e]:
        if devices:
            arr = embed_on_devices(a.data_path, env, a.embedding_name, devices, seed=a.seed, runtime=a.runtime,
                                   batch_size=batch, prefetch=a.prefetch, wait=a.wait)
            print(f"{arr.path}: {arr.shape[0]} frames x {arr.shape[1]} ({a.embedding_name}, {len(devices)} devices)")
            continue
        with open_dataset(a.data_path, env, mode="a") as ds:
            enc = make_encoder(a.embedding_name, ds, seed=a.seed, runtime=a.runtime)
            arr = embed(ds, enc, batch_size=batch, shard=shard, wait=a.wait, progress=not a.quiet,
                        prefetch=a.prefetch)
            where = f"{ds.path}/features/{enc.name}-{enc.fingerprint}"
            if find_features(ds, enc) is None:
                done = int(arr.attrs.get("frames_done", 0))
                print(f"{where}: shard {shard[0]}/{shard[1]} done; features are complete once every shard has run "
                      f"(the first {done} of {ds.num_frames} frames are embedded without a gap)")
            else:
                print(f"{where}: {ds.num_frames} frames x {arr.shape[1]} ({enc.name}, fingerprint {enc.fingerprint})")


def cmd_train(a) -> None:
    from pvr.bc.config import from_namespace
    from pvr.bc.trainer import train

    cfg = from_namespace(a)
    run_dir = train(cfg)
    if not cfg.disable_save:
        print(f"run directory: {run_dir}")


def cmd_launch(a) -> None:
    from pvr.bc.config import add_arguments, from_namespace
    from pvr.launch.submission import launch

    train_args = a.train_args[1:] if a.train_args[:1] == ["--"] else a.train_args
    tp = argparse.ArgumentParser(prog="pvr launch [submitit options] --", description="pvr train flags")
    add_arguments(tp)
    launch(from_namespace(tp.parse_args(train_args)), a, plugins=pvr.plugins.loaded())


def cmd_sweep(a) -> None:
    from pvr.bc.config import from_namespace
    from pvr.launch.submission import sweep

    # --env/--embedding_name/--seed hold the grid; the other train flags are shared by every run
    base = from_namespace(argparse.Namespace(**{**vars(a), "env": "", "embedding_name": "", "seed": 0}))
    sweep(base, a.embedding_name, a.env, a.seed, a, plugins=pvr.plugins.loaded())


def cmd_evaluate(a) -> None:
    from pvr.evaluation.saved import evaluate_run

    results = evaluate_run(a.run_dir, episodes=a.num_episodes_test, envs=a.env, seed=a.seed,
                           num_envs=a.num_envs_test, videos=a.video, runtime=a.runtime)
    for env, r in results.items():
        print(f"{env} : return {r['return']}, success {r['success']} ({r['episodes']} episodes)")
    if a.video:
        print(f"videos: {a.run_dir.rstrip('/')}/videos/")


def cmd_report(a) -> None:
    from pvr.report import report

    text, png, _ = report(a.run_dirs, a.out, metric=a.metric, manifest=a.manifest, reps=a.reps, seed=a.seed)
    print(text)
    out = png.parent
    print(f"\nreport: {out / 'report.md'}, {out / 'report.html'}")
    print(f"plot: {png}")


def cmd_quickstart(a) -> None:
    from pvr.quickstart import QuickstartConfig, run

    run(QuickstartConfig(out=a.out, env=a.env, episodes=a.episodes, epochs=a.epochs,
                         encoders=[e for e in a.encoders.split(",") if e], seeds=a.seeds))


def cmd_benchmark(a) -> None:
    from pvr import benchmark

    if a.list:
        _print_table(("protocol", "description"), benchmark.describe_all())
        print("\nAlso: the path of your own protocol .yaml (schema: pvr.benchmark.protocol).")
        return
    if not a.protocol or not a.embedding_name:
        raise PvrError("give a protocol and --embedding_name, e.g. `pvr benchmark quick --embedding_name "
                       "random,true_state`; `pvr benchmark --list` shows the protocols")
    plan = benchmark.plan(benchmark.load(a.protocol), a.embedding_name, seeds=a.seeds, save_path=a.save_path,
                          data_path=a.data_path, runtime=a.runtime)
    if a.dry_run:
        benchmark.dry_run(plan)
    else:
        benchmark.run(plan, a, cluster=a.cluster, plugins=pvr.plugins.loaded(), jobs=a.jobs)


def cmd_convert(a) -> None:
    import pvr.data

    print(pvr.data.convert(a.src, a.dst, env=a.env, overwrite=a.overwrite, src_format=a.src_format,
                           dst_format=a.dst_format, obs_key=a.obs_key, state_key=a.state_key,
                           env_kwargs=_json_dict(a.env_kwargs), check_env=not a.no_env_check, progress=True,
                           embedding_name=a.embedding_name))


def cmd_encoders(a) -> None:
    import fnmatch

    import pvr.encoders as E
    from pvr.pretrain.registered import listing

    names = E.available(a.pattern)
    mine = [r for r in listing() if not a.pattern or fnmatch.fnmatch(r["name"], a.pattern)]
    if not names and not mine:
        raise PvrError(f"no encoder matches {a.pattern!r}; `pvr encoders` lists them all")
    rows = [E.info(n) for n in names if n not in {r["name"] for r in mine}]
    head = ("name", "family", "dim", "input", "weights", "present", "licence")
    cells = [[r["name"], r["family"], str(r["dim"] or "env"), str(r["input_size"]), r["weights"],
              "yes" if r["present"] else "no", r.get("licence") or ""] for r in rows]
    if cells:
        _print_table(head, cells)
    published = sorted({(r["name"], r["published"]) for r in rows if r.get("published") and not r["present"]})
    if published and a.pattern:
        print("\nWhere the missing weights are published:")
        for name, url in published:
            print(f"  {name}: {url}")
    if mine:
        print("\nPre-trained here by `pvr pretrain` (in $PVR_MODEL_PATH):")
        _print_table(("name", "family", "method", "arch", "dim", "datasets", "weights present"),
                     [[r["name"], r["family"], r["method"], r["arch"], str(r["dim"]), r["datasets"],
                       "yes" if r["present"] else "no (NAME.pth missing)"] for r in mine])
    print("\nAlso: random<N> (N stride-2 conv layers). Weights folder: $PVR_MODEL_PATH.")


def cmd_experts(a) -> None:
    import pvr.envs
    import pvr.experts

    defaults: dict[str, list[str]] = {}
    for suite in pvr.envs.suites():
        if suite.default_expert:
            defaults.setdefault(suite.default_expert, []).append(suite.name)
    head = ("expert", "suites", "default for", "what it is")
    cells = [[e.name, ", ".join(e.meta.get("suites", ())) or "any", ", ".join(defaults.get(e.name, [])) or "-",
              e.meta.get("description", "")] for e in pvr.experts.EXPERTS
             if not a.suite or a.suite in e.meta.get("suites", ()) or not e.meta.get("suites")]
    _print_table(head, cells)
    from pvr.experts.planning import TASKS

    print("\nmppi planning rewards (pvr.experts.planning.register_task adds one): "
          + ", ".join(sorted(k for k in TASKS)))
    print("Options go in --expert_kwargs as JSON, e.g. '{\"samples\": 128, \"horizon\": 40}' for mppi.")


def cmd_envs(a) -> None:
    import pvr.envs

    head = ("suite", "names", "examples", "image", "spaces", "works here")
    cells = []
    for s in pvr.envs.suites():
        ex = [e for e in s.examples if not a.pattern or __import__("fnmatch").fnmatch(e, a.pattern)]
        if a.pattern and not ex:
            continue
        cells.append([s.name, getattr(s, "pattern", "") or getattr(s, "prefix", ""), ", ".join(ex[:4]),
                      str(s.image_size), getattr(s, "spaces", "") or "-", "yes" if s.works else f"no: {s.reason}"])
    _print_table(head, cells)


def _print_table(head, cells) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *cells)]
    for row in [head, ["-" * w for w in widths], *cells]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


# -- parser -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from pvr.bc.config import add_arguments

    p = argparse.ArgumentParser(prog="pvr", description="Which pre-trained vision model is best for control? "
                                "collect → embed → train ⇄ evaluate → report")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable), e.g. one that registers your own encoders; "
                        "packages can also declare an entry point in the group 'pvr.plugins'")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    s = sub.add_parser("collect", help="collect expert demonstrations into <data_path>/<env>.zarr")
    s.add_argument("--env", required=True)
    s.add_argument("--episodes", type=int, required=True, help="total episodes the dataset should hold")
    s.add_argument("--data_path", default="pvr_data")
    s.add_argument("--expert", default=None, help="expert kind (default: the suite's; `pvr experts` lists them), "
                   "or policy:<file> for a saved policy")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--keep-failures", "--keep_failures", dest="keep_failures", action="store_true",
                   help="also keep episodes the expert failed")
    s.add_argument("--env_kwargs", default="", help="JSON dict for pvr.envs.make, e.g. '{\"max_steps\": 64}'")
    s.add_argument("--expert_kwargs", default="", help="JSON dict for the expert, e.g. '{\"samples\": 64}' for a planner")
    s.add_argument("--workers", type=int, default=1,
                   help="episodes run in this many processes (the dataset is the same whatever the number)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_collect)

    s = sub.add_parser("embed", help="embed every frame of a dataset with an encoder (cached by fingerprint)")
    s.add_argument("--env", required=True, help="environment name(s), comma-separated")
    s.add_argument("--embedding_name", required=True)
    s.add_argument("--data_path", default="pvr_data")
    s.add_argument("--batch_size", default="64",
                   help="frames per forward pass, or auto: doubled from 8 while images/s grow by more than 5%% "
                        "and memory suffices (default: 64)")
    s.add_argument("--prefetch", type=int, default=2,
                   help="batches read from the dataset ahead of the encoder, on a background thread (0: off)")
    s.add_argument("--devices", default=None, metavar="DEV,DEV|all",
                   help="embed on several devices at once, one process per device each embedding shard i/n "
                        "(e.g. cuda:0,cuda:1, or all: every GPU)")
    s.add_argument("--seed", type=int, default=1,
                   help="draws the weights of encoders with random weights (random<N>); use the --seed of the "
                        "`pvr train` run that will read the features (default: 1, pvr train's default)")
    s.add_argument("--shard", default=None, metavar="I/N",
                   help="embed only shard I of N (0-based; e.g. a Slurm array: "
                        "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); shards may run at once")
    s.add_argument("--wait", action="store_true",
                   help="if another process is embedding the same features, wait for it instead of refusing")
    s.add_argument("--runtime", default="torch", choices=RUNTIMES,
                   help="what runs the encoder on a CPU: torch, ONNX Runtime or OpenVINO (exported once, cached, "
                        "features checked against torch's), or auto: the fastest measured here (pvr[runtime] extra)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_embed)

    s = sub.add_parser("train", help="behavioural cloning with parallel evaluation")
    add_arguments(s)
    s.set_defaults(fn=cmd_train)

    from pvr.launch.options import add_executor_arguments

    s = sub.add_parser("launch", help="submit one training run to Slurm (submitit), requeued on preemption",
                       usage="pvr launch [submitit options] -- <pvr train flags>")
    add_executor_arguments(s)
    s.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: the flags of `pvr train`")
    s.set_defaults(fn=cmd_launch)

    s = sub.add_parser("sweep", conflict_handler="resolve",
                       help="submit encoders x environments x seeds as one job array; finished runs are skipped")
    add_arguments(s)
    s.add_argument("--env", required=True, help="environments, comma-separated: one run each; "
                   "join with + to train several together, e.g. 'A+B,C' is two runs")
    s.add_argument("--embedding_name", required=True, help="encoders, comma-separated")
    s.add_argument("--seed", default="1", help="seeds, comma-separated or ranges, e.g. 1,2 or 1-5 (default: 1)")
    add_executor_arguments(s)
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("evaluate", help="evaluate a saved run's policy")
    s.add_argument("run_dir")
    s.add_argument("--num_episodes_test", type=int, default=50)
    s.add_argument("--num_envs_test", type=int, default=None,
                   help="environments played at once, each in its own process (default: one per core)")
    s.add_argument("--env", default=None, help="environments (default: the run's), comma-separated")
    s.add_argument("--seed", type=int, default=None, help="episode seed base (default: the run's)")
    s.add_argument("--runtime", default="torch", choices=RUNTIMES,
                   help="what runs a frozen encoder on a CPU (as pvr train --runtime) (default: torch)")
    s.add_argument("--video", type=int, default=0, metavar="N",
                   help="save the first N episodes per environment as GIFs in <run_dir>/videos/")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("report", help="tables, intervals and figures comparing encoders, from run directories",
                       description="Write report.md, a self-contained report.html and their PNGs from the run "
                                   "directories under the given paths (finished or not; missing runs are marked). "
                                   "The expected grid and scoring come from DIR/benchmark.json when present: "
                                   '{"protocol": str, "tasks": [env], "encoders": [name], "seeds": [int], '
                                   '"metric": "final"|"best", "normaliser": {env or glob: max return}, '
                                   '"suites": {env or glob: suite}}, every field optional.')
    s.add_argument("run_dirs", nargs="+", metavar="DIR")
    s.add_argument("--out", default=None, help="where to write the report and its files (default: the first DIR)")
    s.add_argument("--metric", choices=["final", "best"], default=None,
                   help="final: the last evaluation (the original's); best: the highest score over training "
                        "(CortexBench's). Default: the manifest's, else final")
    s.add_argument("--manifest", default=None, help="benchmark.json to use (default: DIR/benchmark.json if any)")
    s.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per interval")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (the report is reproducible)")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("quickstart", help="the whole pipeline on a small MiniGrid level, 2 seeds, in minutes",
                       description="`pvr benchmark quickstart` with three encoders: collect, embed, train and "
                                   "evaluate every (encoder, seed), then a report with intervals")
    s.add_argument("--out", default="pvr_quickstart")
    s.add_argument("--env", default=None, help="a MiniGrid level (default: the protocol's, DoorKey-6x6)")
    s.add_argument("--episodes", type=int, default=None, help="demonstrations (default: the protocol's, 30)")
    s.add_argument("--epochs", type=int, default=None, help="default: the protocol's, 60")
    s.add_argument("--encoders", default="random,efficientnet_lite0,true_state")
    s.add_argument("--seeds", default=None, help="e.g. 1,2,3 or 1-5 (default: the protocol's, 1,2)")
    s.set_defaults(fn=cmd_quickstart)

    s = sub.add_parser("benchmark", conflict_handler="resolve",
                       help="run a named protocol (tasks x encoders x seeds): collect, embed, train, evaluate",
                       description="Run every (task, encoder, seed) of a protocol: collect missing demonstrations "
                                   "with pvr's experts, embed, train and evaluate; finished runs are skipped, "
                                   "unfinished ones resume. Then `pvr report SAVE_PATH`.")
    s.add_argument("protocol", nargs="?", help="a shipped protocol (`--list`) or the path of your own .yaml")
    s.add_argument("--list", action="store_true", help="list the shipped protocols")
    s.add_argument("--embedding_name", default=None, help="encoders, comma-separated, e.g. random,true_state")
    s.add_argument("--seeds", default=None, help="seeds, e.g. 1,2 or 1-5 (default: the protocol's)")
    s.add_argument("--save_path", default=None, help="results, runs and manifest (default: pvr_benchmark/<protocol>)")
    s.add_argument("--data_path", default=None, help="datasets (default: <save_path>/data)")
    s.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="print the grid, the datasets it would create and a cost estimate; run nothing")
    add_executor_arguments(s)
    s.add_argument("--cluster", choices=("local", "auto", "slurm", "debug"), default="local",
                   help="local: every run on this machine (one after another, or --jobs at once); slurm: submitit job arrays "
                        "(collecting is a job too); auto: slurm if sbatch exists, else local; debug: "
                        "the slurm path with submitit's in-process executor (default: local)")
    s.add_argument("--runtime", default="torch", choices=RUNTIMES,
                   help="what runs frozen encoders in each run's evaluation on a CPU (pvr train --runtime; "
                        "features checked against torch's) (default: torch)")
    s.add_argument("--jobs", type=int, default=1,
                   help="--cluster local: train this many runs at once, each pinned to its share of the cores "
                        "(embedding still runs first, on all cores) (default: 1)")
    s.set_defaults(fn=cmd_benchmark)

    s = sub.add_parser("convert", help="store <-> legacy pickle, D4RL / robomimic HDF5, Minari (by file type)")
    s.add_argument("src", help="a .zarr store, .pickle/.pkl, .hdf5/.h5 (D4RL or robomimic), a Minari dataset "
                               "directory or minari:<id> (under $MINARI_DATASETS_PATH)")
    s.add_argument("dst", help="a .zarr store, or (from a store) .pickle/.pkl, .hdf5 (D4RL), a Minari directory")
    s.add_argument("--env", default=None, help="environment name (default: the file's own record, else its stem); "
                                               "actions are checked against it, and frames re-rendered with it "
                                               "when the file holds only states")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--from", dest="src_format", default=None, choices=["zarr", "pickle", "d4rl", "robomimic", "minari"],
                   help="source format (default: from the file)")
    s.add_argument("--to", dest="dst_format", default=None,
                   choices=["zarr", "pickle", "habitat", "d4rl", "robomimic", "minari"],
                   help="destination format (default: from the name; .hdf5 is D4RL; a .pickle keeps the layout of "
                        "the pickle the store came from, else the Habitat layout for 2-view stores; habitat forces "
                        "the original's Habitat layout)")
    s.add_argument("--embedding_name", default=None,
                   help="encoder of an embedded pickle's features (<env>_<embedding>.pickle, obs = (n, D) floats); "
                        "default: from the file name")
    s.add_argument("--obs_key", default=None, help="HDF5 key holding the frames, e.g. agentview_image")
    s.add_argument("--state_key", default=None, help="HDF5 key holding the low-dimensional state, e.g. states")
    s.add_argument("--env_kwargs", default="", help="JSON dict for pvr.envs.make (re-rendering, checks)")
    s.add_argument("--no_env_check", action="store_true", help="do not check actions against the environment")
    s.set_defaults(fn=cmd_convert)

    from pvr.pretrain.config import PretrainConfig

    def cmd_pretrain(a) -> None:
        from pvr.bc.config import from_namespace
        from pvr.pretrain import pretrain

        cfg = from_namespace(a, cls=PretrainConfig)
        if a.cluster is None:  # no --cluster: train here
            print(pretrain(cfg))
        else:
            from pvr.pretrain.job import submit

            submit(cfg, a)

    s = sub.add_parser("pretrain", help="self-supervised pre-training (MoCo v2, MAE) of a new encoder on collected "
                                        "frames; then --embedding_name NAME",
                       description="writes NAME.pth (the method's upstream layout) and NAME.pvr.json into "
                                   "$PVR_MODEL_PATH (or --out); resumes from <save_path>/<name>/ when stopped",
                       conflict_handler="resolve")
    add_arguments(s, cls=PretrainConfig)
    from pvr.launch.options import CLUSTERS, add_executor_arguments

    add_executor_arguments(s)
    s.add_argument("--cluster", choices=CLUSTERS, default=None,
                   help="submit the run as a job: slurm, local (a submitit process), debug (in this process), "
                        "auto (slurm if sbatch exists, else local); without it the run trains here")
    s.set_defaults(fn=cmd_pretrain)

    s = sub.add_parser("encoders", help="list encoders")
    s.add_argument("--pattern", default=None, help="shell-style filter, e.g. 'efficientnet_*'")
    s.set_defaults(fn=cmd_encoders)

    s = sub.add_parser("experts", help="list demonstration experts (planners, scripted, saved policies)")
    s.add_argument("--suite", default=None, help="only experts for this suite, e.g. DMC")
    s.set_defaults(fn=cmd_experts)

    s = sub.add_parser("envs", help="list environment suites")
    s.add_argument("--pattern", default=None)
    s.set_defaults(fn=cmd_envs)
    return p


def run() -> None:
    """The ``pvr`` command. Everything the command made lives until the process exits, so it is
    frozen out of the interpreter's final garbage collection, which otherwise walks every object
    of torch, the simulators and the data once more (measured: up to 9 s after a Ctrl-C on a busy
    2-core machine)."""
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (Slurm, `kill`) unwinds like Ctrl-C: `finally` blocks close the evaluation
    # process and the last checkpoint stays the newest complete one; a swallowed interrupt
    # is raised again by the loops, and a second signal exits at once
    with interrupt.handling():
        return _run(args)


def _run(args) -> int:
    try:
        pvr.plugins.load(args.plugin)
        args.fn(args)
    except PvrError as e:
        print(f"pvr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pvr {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pvr experts | head`: the reader left; say nothing more (Python docs' recipe)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    run()
