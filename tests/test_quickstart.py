"""The README quickstart, end to end, exactly as a user runs it (minutes: marked slow)."""
import json
import os
import subprocess
import sys

import pytest

ENV = "MiniGrid-DoorKey-5x5-v0"


@pytest.mark.slow
@pytest.mark.timeout(3000)  # ~4 min on a quiet 2-core machine; the bound is generous for noisy neighbours
def test_quickstart_end_to_end(tmp_path):
    out = tmp_path / "qs"
    r = subprocess.run([sys.executable, "-m", "pvr", "quickstart", "--out", str(out)], capture_output=True,
                       text=True, timeout=2700, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    # the table, the run directories and the plot are printed
    assert "encoder" in r.stdout and "success" in r.stdout
    for enc in ("random", "efficientnet_lite0", "true_state"):
        assert str(out / "runs" / f"{ENV}-{enc}-s1") in r.stdout
    assert f"plot: {out / 'success.png'}" in r.stdout
    assert (out / "success.png").stat().st_size > 5000
    summary = {s["encoder"]: s for s in json.loads((out / "summary.json").read_text())}
    assert set(summary) == {"random", "efficientnet_lite0", "true_state"}
    assert all(s["finished"] and s["final_epoch"] == 40 for s in summary.values())
    assert summary["true_state"]["success"] >= 0.8
    assert summary["efficientnet_lite0"]["success"] >= 0.8
    # progress bars and the original's console lines were shown
    assert "collect " + ENV in r.stderr and "embed " + ENV in r.stderr
    assert "   ### 40 | loss " in r.stdout and f"   ___ 40 | {ENV} : return " in r.stdout
    # a second run reuses everything that is finished
    again = subprocess.run([sys.executable, "-m", "pvr", "quickstart", "--out", str(out)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already finished") == 3
