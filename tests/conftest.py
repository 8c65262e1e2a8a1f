import os

os.environ.setdefault("PVR_MODEL_PATH", "/nonexistent-pvr-models")  # tests never see a user's weights
import pytest  # noqa: E402

import pvr.headless  # noqa: E402

pvr.headless.configure()  # headless GL before any test module imports a simulator (mujoco, dm_control, pyglet)


@pytest.fixture(autouse=True)
def _isolated_model_path(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path_factory.mktemp("models")))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
