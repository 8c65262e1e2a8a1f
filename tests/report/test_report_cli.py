"""`pvr report DIR` on fake run directories written in the trainer's own format."""
import base64
import json
import re
import time

import numpy as np
import pytest

from pvr.bc import trainer
from pvr.bc.config import TrainConfig
from pvr.cli import main
from pvr.errors import PvrError
from pvr.utils.io import append_jsonl, write_json

GRID = "MiniGrid-DoorKey-5x5-v0"   # scored by success
DMC = "DMC-walker-walk"            # scored by return / 1000
EPISODES = 20
WILSON_Z = 1.959963984540054


def fake_run(root, env, enc, seed, finals, *, finished=True, epochs=4, timings=None):
    """A run directory as the trainer leaves it: config.json, one stats row per epoch, done."""
    cfg = TrainConfig(env=env, embedding_name=enc, seed=seed, epochs=epochs, eval_every=2,
                      num_episodes_test=EPISODES, data_path="d", save_path=str(root))
    d = root / cfg.run_id
    d.mkdir(parents=True)
    write_json(d / "config.json", cfg.to_dict())
    started = time.time() - 10 * epochs
    last = epochs if finished else epochs // 2
    for e in range(last + 1):
        test = {}
        if e % 2 == 0 or e == epochs:
            frac = e / epochs
            success, ret = finals["success"] * frac, finals["return"] * frac
            test = {env: {"return": ret, "success": success, "length": 10.0, "episodes": EPISODES}}
        row = trainer._row(e, {"loss": 1.0, "norm": 1.0, "samples": 5} if e else None, test, started)
        append_jsonl(d / "stats.jsonl", row)
    if finished:
        (d / trainer.DONE_MARKER).write_text("2026-01-01T00:00:00\n")
    if timings:
        write_json(d / "timings.json", timings)
    return d


SCORES = {  # (env, encoder, seed) -> final success and return
    (GRID, "random", 1): {"success": 0.30, "return": 0.2},
    (GRID, "random", 2): {"success": 0.45, "return": 0.3},
    (GRID, "true_state", 1): {"success": 0.90, "return": 0.8},
    (GRID, "true_state", 2): {"success": 0.95, "return": 0.85},
    (DMC, "random", 1): {"success": 0.0, "return": 120.0},
    (DMC, "random", 2): {"success": 0.0, "return": 180.0},
    (DMC, "true_state", 1): {"success": 0.0, "return": 700.0},
    # (DMC, "true_state", 2) is missing
}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "bench"
    for (env, enc, seed), s in SCORES.items():
        fake_run(root, env, enc, seed, s, timings={"collect": 12.0, "embed": 30.0} if seed == 1 else None)
    return root


def row_of(md: str, *cells: str) -> str:
    def has(line: str, c: str) -> bool:
        return any(x == c or x.startswith(c + " ") for x in (y.strip().strip("*") for y in line.split("|")))

    rows = [l for l in md.splitlines() if l.startswith("|") and all(has(l, c) for c in cells)]
    assert len(rows) == 1, (cells, rows)
    return rows[0]


def interval(cell: str) -> tuple[float, float, float]:
    m = re.search(r"([-\d.]+) \[([-\d.]+), ([-\d.]+)\]", cell)
    assert m, cell
    return tuple(map(float, m.groups()))


def test_report_cli_writes_md_and_self_contained_html(runs, capsys):
    assert main(["report", str(runs), "--reps", "300"]) == 0
    printed = capsys.readouterr().out
    assert "report.md" in printed and "true_state" in printed and "1 of 8 expected runs missing" in printed
    md = (runs / "report.md").read_text()
    html = (runs / "report.html").read_text()

    # per-task interval: mean of the two seeds, bootstrap bounds around it
    mean, lo, hi = interval(row_of(md, GRID, "true_state", "2/2").split("|")[5])
    assert mean == pytest.approx(0.925, abs=5e-4) and 0.90 - 1e-9 <= lo <= mean <= hi <= 0.95 + 1e-9 and lo < hi
    # DMC is scored by return / 1000
    mean, lo, hi = interval(row_of(md, DMC, "random", "2/2").split("|")[5])
    assert mean == pytest.approx(0.150, abs=5e-4) and "return / 1000" in row_of(md, DMC, "random", "2/2")
    # DMC defines no success: no pooled success rate of 0 is shown for it, in the file or the console
    assert row_of(md, DMC, "random", "2/2").split("|")[6].strip() == "n/a (no success defined)"
    assert "(0/" not in row_of(md, DMC, "random", "2/2")
    assert all("n/a (no success defined)" in line for line in printed.splitlines() if DMC in line)
    # success pooled over episodes with its Wilson interval, from the closed formula
    k, n = round(0.30 * EPISODES) + round(0.45 * EPISODES), 2 * EPISODES
    p = k / n
    c = (p + WILSON_Z ** 2 / (2 * n)) / (1 + WILSON_Z ** 2 / n)
    h = WILSON_Z / (1 + WILSON_Z ** 2 / n) * np.sqrt(p * (1 - p) / n + WILSON_Z ** 2 / (4 * n * n))
    assert f"({k}/{n}) [{c - h:.3f}, {c + h:.3f}]" in row_of(md, GRID, "random", "2/2")

    # the missing run is marked in the per-task table and in the runs table
    assert "(missing seed 2)" in row_of(md, DMC, "true_state", "1/2")
    missing = row_of(md, DMC, "true_state", "2", "missing: no run directory")
    assert missing.startswith("| **")
    assert "**1 of 8 expected runs are missing**" in md
    # aggregates exist: per suite, across suites (IQM, probability of improvement, mean rank)
    assert "## Per suite" in md and "## Across suites" in md and "P(X > Y)" in md and "mean rank" in md
    # stage times shown where the run directory records them (the benchmark runner's timings.json), — elsewhere
    assert "| 12 s | 30 s | — | — |" in row_of(md, GRID, "random", "1", "done")
    assert "| — | — | — | — |" in row_of(md, GRID, "random", "2", "done")
    # every figure says what it was computed from
    for name in ("success.png", "suites.png", "aggregate.png", "ranks.png"):
        assert (runs / name).read_bytes()[:4] == b"\x89PNG"
        assert f"]({name})" in md
    assert md.count("7 finished runs of 8 expected") >= 4

    # html: one file, every image inline
    imgs = re.findall(r"src='([^']*)'", html)
    assert len(imgs) == 4 and all(i.startswith("data:image/png;base64,") for i in imgs)
    assert all(base64.b64decode(i.split(",", 1)[1])[:4] == b"\x89PNG" for i in imgs)
    assert "class='missing'" in html and "missing: no run directory" in html and "[" in html

    summary = {(s["encoder"], s["env"]): s for s in json.loads((runs / "summary.json").read_text())}
    assert summary[("true_state", DMC)]["seeds"] == 1 and summary[("true_state", DMC)]["missing_seeds"] == [2]
    assert summary[("true_state", GRID)]["success"] == pytest.approx(0.925)


def test_overall_statistics_match_independent_computation(runs, tmp_path):
    assert main(["report", str(runs), "--reps", "200", "--out", str(tmp_path / "out")]) == 0
    full = json.loads((tmp_path / "out" / "report.json").read_text())
    o = full["overall"]
    # per-task means; ranks 1 = best; true_state wins both tasks
    assert o["mean_rank"] == {"random": 2.0, "true_state": 1.0}
    # matrices use per task as many seeds as the encoder's scarcest task: true_state 1 (DMC seed 2 missing)
    assert o["seeds_per_task"] == {"random": 2, "true_state": 1}
    x = np.array([[0.90, 0.70]])  # true_state seed 1: GRID success, DMC return/1000
    assert o["aggregates"]["true_state"]["mean"] == pytest.approx(x.mean())
    r = np.array([[0.30, 0.12], [0.45, 0.18]])
    assert o["aggregates"]["random"]["iqm"] == pytest.approx(np.sort(r.ravel())[1:3].mean())
    poi = o["poi"][0]
    assert (poi["x"], poi["y"]) == ("random", "true_state") and poi["p"] == pytest.approx(0.0)


def test_manifest_sets_grid_metric_and_normaliser(runs, tmp_path):
    fake_run(runs, GRID, "random", 3, {"success": 0.5, "return": 0.1}, finished=False)
    write_json(runs / "benchmark.json", {"protocol": "toy", "tasks": [GRID, DMC], "encoders": ["random", "true_state"],
                                         "seeds": [1, 2, 3], "metric": "best", "normaliser": {"DMC-*": 500}})
    assert main(["report", str(runs), "--reps", "100"]) == 0
    md = (runs / "report.md").read_text()
    assert "pvr report: toy" in md and "metric best" in md and "of 12 expected" in md
    assert "missing: unfinished (epoch 2 of 4)" in row_of(md, GRID, "random", "3", "missing: unfinished (epoch 2 of 4)")
    mean, _, _ = interval(row_of(md, DMC, "random", "2/3").split("|")[5])
    assert mean == pytest.approx((120 + 180) / 2 / 500, abs=5e-4)
    # --metric overrides the manifest's
    assert main(["report", str(runs), "--reps", "100", "--metric", "final"]) == 0
    assert "metric final" in (runs / "report.md").read_text()


def test_best_metric_picks_the_highest_evaluation(tmp_path):
    from pvr.report import Manifest, find_runs
    from pvr.report.runs import Scoring

    d = fake_run(tmp_path, GRID, "random", 1, {"success": 0.5, "return": 0.1})
    rows = [json.loads(l) for l in (d / "stats.jsonl").read_text().splitlines()]
    rows[2]["test"][GRID]["success"] = 0.8  # epoch 2 better than the final epoch 4 (0.5)
    (d / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run, = find_runs([tmp_path])
    scoring = Scoring(Manifest())
    assert run.pick(GRID, "final", scoring).epoch == 4
    assert run.pick(GRID, "best", scoring).epoch == 2 and run.pick(GRID, "best", scoring).success == 0.8


def test_user_mistakes_are_one_line_errors(tmp_path, runs, capsys):
    def error(*args: str) -> str:
        assert main(["report", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        return err

    assert "does not exist" in error(str(tmp_path / "nowhere"))
    before = sorted(p.name for p in runs.iterdir())
    (runs / "benchmark.json").write_text('{"metric": "median"}')
    assert "'metric' must be one of final, best" in error(str(runs))
    (runs / "benchmark.json").write_text("{not json")
    assert "cannot read the benchmark manifest" in error(str(runs))
    assert "--manifest" in error(str(runs), "--manifest", str(tmp_path / "none.json"))
    assert sorted(p.name for p in runs.iterdir()) == sorted(before + ["benchmark.json"])  # no report written


def test_quickstart_report_step_on_fake_runs(runs, tmp_path):
    """quickstart calls report(run_dirs, out) and reads (table, png, summary) with these keys."""
    from pvr.report import report

    dirs = [str(p) for p in sorted(runs.iterdir()) if p.is_dir()]
    text, png, summary = report(dirs, tmp_path / "qs", reps=100)
    assert png == tmp_path / "qs" / "success.png" and png.stat().st_size > 5000
    assert "encoder" in text and "success" in text and "true_state" in text
    rows = {(s["encoder"], s["env"]): s for s in json.loads((tmp_path / "qs" / "summary.json").read_text())}
    assert all(s["finished"] and s["final_epoch"] == 4 for s in rows.values())
    assert rows[("true_state", GRID)]["success"] == pytest.approx(0.925)
    assert summary and (tmp_path / "qs" / "report.html").exists()


def test_wall_time_adds_up_resumed_sessions(tmp_path):
    from pvr.report import find_runs

    d = fake_run(tmp_path, GRID, "random", 1, {"success": 0.5, "return": 0.1})
    rows = [json.loads(l) for l in (d / "stats.jsonl").read_text().splitlines()]
    for row, t in zip(rows, [1.0, 5.0, 9.0, 2.0, 6.0]):  # killed after epoch 2, resumed: the clock restarts
        row["time"] = t
    (d / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run, = find_runs([tmp_path])
    assert run.wall_time == {"train+eval": 9.0 + 6.0}
