"""The README quickstart, end to end, exactly as a user runs it (minutes: marked slow)."""
import json
import os
import subprocess
import sys

import pytest

ENV = "MiniGrid-DoorKey-6x6-v0"
ENCODERS = ("random", "efficientnet_lite0", "true_state")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~6 min on a quiet 2-core machine; the bound is generous for noisy neighbours
def test_quickstart_end_to_end(tmp_path):
    out = tmp_path / "qs"
    r = subprocess.run([sys.executable, "-m", "pvr", "quickstart", "--out", str(out)], capture_output=True,
                       text=True, timeout=3300, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    # the table with intervals, the run directories and the plot are printed
    assert "score [95% CI]" in r.stdout and "success [Wilson 95%]" in r.stdout
    for enc in ENCODERS:
        for seed in (1, 2):
            assert str(out / "runs" / f"{ENV}-{enc}-s{seed}") in r.stdout
    assert f"plot: {out / 'success.png'}" in r.stdout
    assert (out / "success.png").stat().st_size > 5000
    assert (out / "report.html").stat().st_size > 5000 and (out / "report.md").exists()
    manifest = json.loads((out / "benchmark.json").read_text())
    assert manifest["protocol"] == "quickstart"
    summary = {s["encoder"]: s for s in json.loads((out / "summary.json").read_text())}
    assert set(summary) == set(ENCODERS)
    assert all(s["finished"] and s["final_epoch"] == 60 and s["seeds"] == 2 and s["episodes"] == 40
               for s in summary.values())
    # what the README reports: the pretrained encoder separates from the random convnet on this level
    lite0, rand = summary["efficientnet_lite0"], summary["random"]
    assert lite0["success"] >= 0.6, summary
    assert lite0["success_ci"][0] > rand["success_ci"][1] - 0.1, summary
    assert lite0["success"] - rand["success"] >= 0.2, summary
    # progress bars and the original's console lines were shown
    assert "collect " + ENV in r.stderr and "embed " + ENV in r.stderr
    assert "   ### 60 | loss " in r.stdout and f"   ___ 60 | {ENV} : return " in r.stdout
    # a second run reuses everything that is finished
    again = subprocess.run([sys.executable, "-m", "pvr", "quickstart", "--out", str(out)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished, skipped") == 6


def test_quickstart_overrides_and_bad_input(tmp_path):
    from pvr.errors import PvrError
    from pvr.quickstart import QuickstartConfig, protocol

    p = protocol(QuickstartConfig(env="MiniGrid-DoorKey-8x8-v0", episodes=5, epochs=4))
    (t,) = p.tasks
    assert (t.env, t.demonstrations, t.epochs, t.eval_every) == ("MiniGrid-DoorKey-8x8-v0", 5, 4, 4)
    assert protocol(QuickstartConfig()).tasks[0].env == ENV
    with pytest.raises(PvrError, match="MiniGrid"):
        protocol(QuickstartConfig(env="DMC-walker-walk"))
    with pytest.raises(PvrError, match="at least 1"):
        protocol(QuickstartConfig(epochs=0))
    r = subprocess.run([sys.executable, "-m", "pvr", "quickstart", "--out", str(tmp_path / "q"), "--encoders",
                        "no_such_encoder"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no_such_encoder" in r.stderr
    assert not (tmp_path / "q").exists()
