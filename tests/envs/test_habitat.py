import pytest

import pvr.envs
from pvr.envs import habitat
from pvr.errors import PvrError

REASON = habitat._probe()


def test_listed_with_the_reason_it_cannot_run():
    info = {s.name: s for s in pvr.envs.suites()}["HabitatImageNav"]
    assert info.works is (REASON is None)
    if REASON is not None:
        assert "habitat-sim" in info.reason and "ImageNav-*" in info.reason
        with pytest.raises(PvrError, match="cannot run here"):
            pvr.envs.make("HabitatImageNav-apartment_0")


def test_missing_scene_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_HABITAT_SCENES", str(tmp_path))
    with pytest.raises(PvrError, match="PVR_HABITAT_SCENES"):
        habitat.scene_path("apartment_0")
    (tmp_path / "room_0" / "habitat").mkdir(parents=True)
    (tmp_path / "room_0" / "habitat" / "mesh_semantic.ply").write_text("")
    assert habitat.scene_path("room_0").name == "mesh_semantic.ply"


@pytest.mark.skipif(REASON is not None, reason=f"habitat-sim unavailable: {REASON}")
def test_habitat_imagenav_runs(tmp_path):
    env = pvr.envs.make("HabitatImageNav-apartment_0", image_size=32)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 6) and info["true_state"].shape == (8,)
    env.step(0)
    assert env.unwrapped.backend.follower_action() in (None, 0, 1, 2)
    env.close()
