"""Protocol files: loading, validation errors, `pvr benchmark --list` and `--dry-run` counts."""
import json
import textwrap

import pytest

from pvr import benchmark, cli
from pvr.benchmark import protocol as P
from pvr.collect import collect
from pvr.errors import PvrError

GOOD = """
name: mine
description: two MiniGrid levels
seeds: [3, 4]
metric: best
demonstrations: 6
epochs: 3
eval_every: 1
eval_episodes: 2
train: {hidden_size: 16}
suites:
  grid:
    tasks: [MiniGrid-Empty-5x5-v0, MiniGrid-DoorKey-5x5-v0]
    env_kwargs: {max_steps: 20}
    train: {batch_size: 2}
"""


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_user_protocol_resolves_suite_overrides_on_top_of_the_defaults(tmp_path):
    p = P.load(write(tmp_path, GOOD))
    assert (p.name, p.seeds, p.metric, p.recipe) == ("mine", [3, 4], "best", "original")
    assert [t.env for t in p.tasks] == ["MiniGrid-Empty-5x5-v0", "MiniGrid-DoorKey-5x5-v0"]
    t = p.tasks[0]
    assert (t.demonstrations, t.epochs, t.eval_every, t.eval_episodes) == (6, 3, 1, 2)
    assert t.train == {"hidden_size": 16, "batch_size": 2}  # the suite's train adds to the protocol's
    assert t.env_kwargs == {"max_steps": 20}
    assert p.suites == {"MiniGrid-Empty-5x5-v0": "grid", "MiniGrid-DoorKey-5x5-v0": "grid"}


def test_joint_tasks_image_size_and_camera_become_env_kwargs(tmp_path):
    p = P.load(write(tmp_path, """
        suites:
          control:
            tasks: [DMC-walker-walk+DMC-walker-stand]
            image_size: 64
            camera: 1
            env_kwargs: {fast_render: false}
    """))
    (t,) = p.tasks
    assert t.env == "DMC-walker-walk,DMC-walker-stand"
    assert t.env_kwargs == {"fast_render": False, "image_size": 64, "camera_id": 1}  # DMC's camera keyword


@pytest.mark.parametrize("text, message", [
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0]}}\nepoch: 3\n", "unknown key 'epoch' in the protocol"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0], demos: 3}}\n", "unknown key 'demos' in suite 'g'"),
    ("suites: {g: {tasks: [NoSuchSuite-foo]}}\n", "Environment suites:"),
    ("suites: {g: {tasks: []}}\n", "needs tasks"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0]}}\nmetric: mean\n", "metric must be final or best"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0]}}\nseeds: [1, 1]\n", "distinct integers"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0]}}\ndemonstrations: 0\n", "demonstrations in suite 'g'"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0]}}\ntrain: {seed: 3}\n", "set by the protocol itself"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0]}}\ntrain: {hiden_size: 3}\n", "not a `pvr train` flag"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0], camera: 1}}\n", "has one fixed camera"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0], image_size: 64}}\n", "has no image_size"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0, MiniGrid-Empty-5x5-v0]}}\n", "listed twice"),
    ("suites: [1, 2]\n", "suites must map"),
    ("suites: {g: {tasks: [MiniGrid-Empty-5x5-v0]}}\nnormaliser: {'DMC-*': -1}\n", "positive max return"),
    ("name: [x\n", "cannot read protocol"),
])
def test_protocol_mistakes_are_one_line_errors_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(PvrError, match=None) as e:
        P.load(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_unknown_recipe_is_refused_when_the_protocol_is_used(tmp_path):
    p = P.load(write(tmp_path, "recipe: nope\nsuites: {g: {tasks: [MiniGrid-Empty-5x5-v0]}}\n"))
    with pytest.raises(PvrError, match="learner recipe 'nope'.*available: .*original"):
        benchmark.plan(p, "true_state")


def test_unknown_protocol_and_encoder_names(tmp_path):
    with pytest.raises(PvrError, match="unknown protocol 'nope'.*--list"):
        P.load("nope")
    with pytest.raises(PvrError, match="does not exist"):
        P.load(str(tmp_path / "missing.yaml"))
    with pytest.raises(PvrError, match="unknown encoder"):
        benchmark.plan(P.load(write(tmp_path, GOOD)), "true_state,no_such_encoder")


def test_every_shipped_protocol_loads_with_the_names_pvr_knows():
    ships = P.shipped()
    assert {"paper", "quick", "quickstart", "cortexbench-mujoco"} <= set(ships)
    for name in ships:
        p = P.load(name)
        assert p.description and p.tasks, name
        p.check_recipe()
    assert "measured" in P.load("quick").description
    (qs,) = P.load("quickstart").tasks  # what the README's quickstart table was measured on
    assert (qs.env, qs.demonstrations, qs.epochs, qs.eval_episodes) == ("MiniGrid-DoorKey-6x6-v0", 30, 60, 20)


def test_list_shows_each_shipped_protocol_with_its_description(capsys):
    assert cli.main(["benchmark", "--list"]) == 0
    out = capsys.readouterr().out
    for name in P.shipped():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert P.load(name).description[:40] in line


def test_cortexbench_mujoco_is_12_tasks_times_encoders_times_3_seeds(tmp_path, capsys):
    p = P.load("cortexbench-mujoco")
    assert len(p.tasks) == 12 and p.seeds == [100, 200, 300] and p.metric == "best"
    assert sum(t.env.startswith("MetaWorld-") for t in p.tasks) == 5
    assert {t.demonstrations for t in p.tasks if t.suite == "MetaWorld"} == {25}
    assert cli.main(["benchmark", "cortexbench-mujoco", "--embedding_name", "random,true_state", "--dry-run",
                     "--save_path", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "12 task(s) x 2 encoder(s) x 3 seed(s) = 72 runs" in out
    assert not (tmp_path / "b").exists()  # a dry run writes nothing


def test_dry_run_counts_what_a_user_protocol_will_create(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    data = tmp_path / "data"
    collect("MiniGrid-Empty-5x5-v0", 4, data, env_kwargs={"max_steps": 20}, progress=False)
    import pvr.data

    with pvr.data.open(data / "MiniGrid-Empty-5x5-v0.zarr") as ds:
        frames4 = ds.num_frames
    plan = benchmark.plan(P.load(path), "random,true_state", save_path=str(tmp_path / "b"), data_path=str(data))
    est = benchmark.estimate(plan)
    # 2 tasks x 2 encoders x 2 seeds, nothing finished
    assert (est["runs"], est["to_run"], est["finished"]) == (8, 8, 0)
    assert est["epochs"] == 8 * 3
    by_env = {d["env"]: d for d in est["datasets"]}
    assert by_env["MiniGrid-Empty-5x5-v0"]["episodes"] == 2      # 6 wanted, 4 present
    assert by_env["MiniGrid-Empty-5x5-v0"]["frames"] == int(2 * frames4 / 4)  # measured episode length
    assert by_env["MiniGrid-DoorKey-5x5-v0"]["episodes"] == 6
    assert by_env["MiniGrid-DoorKey-5x5-v0"]["frames"] == 6 * 15   # no dataset: the suite's rough length
    # random's weights follow the seed: one embedding per (task, seed); true_state reads states, no frames
    empty_frames = int(frames4 / 4 * 6)
    assert est["embed_frames"] == 2 * empty_frames + 2 * 6 * 15
    assert cli.main(["benchmark", str(path), "--embedding_name", "random,true_state", "--save_path",
                     str(tmp_path / "b"), "--data_path", str(data), "--dry-run", "--seeds", "1-3"]) == 0
    out = capsys.readouterr().out
    assert "2 task(s) x 2 encoder(s) x 3 seed(s) = 12 runs" in out and "not a measurement" in out
    assert not (tmp_path / "b" / "benchmark.json").exists()
    assert json.loads(json.dumps(est))  # plain data


def test_cluster_slurm_without_slurm_fails_before_any_work(tmp_path, capsys, monkeypatch):
    from pvr.benchmark import runner

    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    assert runner.resolve_cluster("auto") == "local"
    save = tmp_path / "b"
    assert cli.main(["benchmark", str(write(tmp_path, GOOD)), "--embedding_name", "true_state", "--save_path",
                     str(save), "--cluster", "slurm"]) == 2
    assert "needs Slurm's sbatch" in capsys.readouterr().err
    assert not save.exists()
