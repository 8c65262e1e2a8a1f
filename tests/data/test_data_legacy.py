from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest

import pvr.data
from pvr.errors import PvrError

from pvr_data_helpers import episodes, make_episode  # noqa: F401  (fixture)

LEGACY = ("obs", "action", "done", "true_state")


def _legacy(episodes, keys=LEGACY) -> dict:
    return {k: [e[k] for e in episodes] for k in keys}


class _Evil:
    def __init__(self, reduce):
        self._reduce = reduce

    def __reduce__(self):
        return self._reduce


def _evil_payloads(marker):
    return {
        "os.system": (os.system, (f"touch {marker}",)),
        "eval": (builtins.eval, (f"open({str(marker)!r}, 'w').close()",)),
        "Popen": (subprocess.Popen, (["touch", str(marker)],)),
        "exec": (builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
    }


@pytest.mark.parametrize("name", ["os.system", "eval", "Popen", "exec"])
@pytest.mark.parametrize("where", ["top", "nested"])
def test_malicious_pickle_refused_and_not_run(tmp_path, episodes, name, where):
    marker = tmp_path / "MARKER"
    payload = _Evil(_evil_payloads(marker)[name])
    data = payload if where == "top" else {**_legacy(episodes), "obs": [episodes[0]["obs"], payload, payload]}
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(PvrError, match=r"refusing to load .*evil\.pickle: it references .*could run code"):
        pvr.data.load_pickle(path)
    with pytest.raises(PvrError, match="refusing to load"):
        pvr.data.open(path)
    with pytest.raises(PvrError, match="refusing to load"):
        pvr.data.convert(path, tmp_path / "out.zarr")
    assert not marker.exists()
    assert not (tmp_path / "out.zarr").exists()


def test_object_dtype_array_refused(tmp_path, episodes):
    data = _legacy(episodes)
    data["true_state"][1] = np.array([[1, "x"]] * 70, dtype=object)
    path = tmp_path / "obj.pickle"
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(PvrError, match="object-dtype"):
        pvr.data.load_pickle(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy2_pickles_load_any_protocol(tmp_path, episodes, protocol):
    path = tmp_path / "p.pickle"
    path.write_bytes(pickle.dumps(_legacy(episodes), protocol=protocol))
    data = pvr.data.load_pickle(path)
    for k in LEGACY:
        assert len(data[k]) == 3
        for got, ep in zip(data[k], episodes):
            np.testing.assert_array_equal(got, ep[k])
    np.testing.assert_array_equal(data["reward"][0], np.zeros(5, np.float32))  # legacy files have no reward


def test_numpy1_style_pickle_loads(tmp_path, episodes):
    raw = pickle.dumps(_legacy(episodes), protocol=2)
    assert b"numpy._core.multiarray" in raw
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # what numpy 1.x wrote
    assert b"numpy._core" not in old
    path = tmp_path / "old.pkl"
    path.write_bytes(old)
    data = pvr.data.load_pickle(path)
    np.testing.assert_array_equal(data["obs"][1], episodes[1]["obs"])
    np.testing.assert_array_equal(data["action"][2], episodes[2]["action"])
    # numpy scalars (multiarray.scalar) inside too
    path.write_bytes(pickle.dumps({**_legacy(episodes), "extra": np.float32(1.5)}, protocol=2)
                     .replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert len(pvr.data.load_pickle(path)["obs"]) == 3


def test_garbage_and_missing_files(tmp_path):
    bad = tmp_path / "bad.pickle"
    bad.write_bytes(b"\x80\x04this is not a pickle")
    with pytest.raises(PvrError, match="damaged or not a pickle"):
        pvr.data.load_pickle(bad)
    with pytest.raises(PvrError, match="no such file"):
        pvr.data.load_pickle(tmp_path / "nope.pickle")
    lst = tmp_path / "list.pickle"
    lst.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(PvrError, match="not a dict"):
        pvr.data.load_pickle(lst)


def test_save_pickle_refuses_overwrite(tmp_path, episodes):
    path = tmp_path / "d.pickle"
    pvr.data.save_pickle(path, _legacy(episodes))
    first = path.read_bytes()
    with pytest.raises(PvrError, match="already exists.*overwrite=True"):
        pvr.data.save_pickle(path, _legacy(episodes[:1]))
    assert path.read_bytes() == first
    pvr.data.save_pickle(path, _legacy(episodes[:1]), overwrite=True)
    assert len(pvr.data.load_pickle(path)["obs"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["d.pickle"]  # no temp files left


def test_save_pickle_validates_before_writing(tmp_path, episodes):
    data = _legacy(episodes)
    data["obs"][2] = data["obs"][2].astype(np.float32)
    with pytest.raises(PvrError, match=r"trajectory 2: key 'obs'"):
        pvr.data.save_pickle(tmp_path / "x.pickle", data)
    assert not list(tmp_path.iterdir())


def test_saved_pickle_is_the_legacy_layout(tmp_path, episodes):
    path = tmp_path / "d.pickle"
    pvr.data.save_pickle(path, _legacy(episodes))
    with path.open("rb") as f:
        raw = pickle.load(f)  # our own file, trusted here: check the plain layout
    assert set(raw) == set(LEGACY)
    assert all(isinstance(raw[k], list) and len(raw[k]) == 3 for k in LEGACY)
    assert raw["obs"][0].shape == (5, 8, 8, 3) and raw["obs"][0].dtype == np.uint8
