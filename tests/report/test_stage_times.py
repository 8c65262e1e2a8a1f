"""`pvr report` shows the wall time of collect, embed, train and evaluation, as the stages recorded them."""
import json

import pytest

from pvr.bc.config import TrainConfig
from pvr.collect import collect
from pvr.embed import embed, make_encoder, open_dataset
from pvr.evaluation import timing

ENV = "MiniGrid-DoorKey-5x5-v0"


def test_run_totals_keep_the_last_line_of_each_epoch_and_skip_a_torn_line(tmp_path):
    timing.record(tmp_path, "train", 1, 2.0)
    timing.record(tmp_path, "train", 2, 3.0)
    timing.record(tmp_path, "evaluate", 0, 5.0)
    timing.record(tmp_path, "train", 2, 4.0)  # epoch 2 redone after a resume: replaces the first
    with open(tmp_path / timing.STAGE_TIMES, "a") as f:
        f.write('{"stage": "train", "ep')  # a kill mid-write
    assert timing.run_totals(tmp_path) == {"train": 6.0, "evaluate": 5.0}
    assert timing.run_totals(tmp_path / "nothing") == {}


@pytest.mark.slow
def test_report_shows_every_stage_of_a_real_run(tmp_path):
    from pvr.bc import trainer
    from pvr.report import report

    data = tmp_path / "data"
    collect(ENV, 4, data, seed=100, env_kwargs={"max_steps": 20}, progress=False)
    with open_dataset(data, ENV) as ds:
        collected = ds.meta["collect_seconds"]
    assert collected > 0
    collect(ENV, 5, data, seed=100, env_kwargs={"max_steps": 20}, progress=False)  # resumed: adds its time
    with open_dataset(data, ENV, mode="a") as ds:
        assert ds.meta["collect_seconds"] > collected
        enc = make_encoder("random3", ds, seed=3)
        arr = embed(ds, enc, batch_size=8, progress=False)
        embedded = arr.attrs["embed_seconds"]
        assert embedded > 0
    cfg = TrainConfig(env=ENV, embedding_name="random3", data_path=str(data), save_path=str(tmp_path / "runs"),
                      xpid="run", epochs=2, eval_every=2, num_episodes_test=2, num_envs_test=2, hidden_size=8,
                      batch_size=2, unroll_length=8, seed=3)
    run_dir = trainer.train(cfg, progress=False)
    lines = [json.loads(l) for l in (run_dir / timing.STAGE_TIMES).read_text().splitlines()]
    assert sorted(l["epoch"] for l in lines if l["stage"] == "train") == [1, 2]
    evaluated = sorted(l["epoch"] for l in lines if l["stage"] == "evaluate")
    stats = [json.loads(l) for l in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert evaluated == [r["epoch"] for r in stats if r["test"]]  # one line per evaluation point
    assert all(l["seconds"] > 0 for l in lines)

    report([str(tmp_path / "runs")], tmp_path / "out", reps=50)
    md = (tmp_path / "out" / "report.md").read_text()
    head = next(l for l in md.splitlines() if l.startswith("| task | encoder | seed | status"))
    row = next(l for l in md.splitlines() if l.startswith(f"| {ENV} | random3 | 3 | done"))
    cells = dict(zip([c.strip() for c in head.split("|")], [c.strip() for c in row.split("|")]))
    for col in ("collect", "embed", "train", "evaluation"):
        assert cells[col].endswith(" s") and cells[col] != "—", (col, cells[col])
    with open_dataset(data, ENV) as ds:
        assert cells["collect"] == f"{ds.meta['collect_seconds']:.0f} s"
    assert cells["embed"] == f"{embedded:.0f} s"
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    wall = summary["runs"][0]["wall_time"]
    assert wall["train"] == pytest.approx(sum(l["seconds"] for l in lines if l["stage"] == "train"))
    assert wall["evaluate"] == pytest.approx(sum(l["seconds"] for l in lines if l["stage"] == "evaluate"))
