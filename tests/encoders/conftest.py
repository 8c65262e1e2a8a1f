"""Fixtures shared by the encoder tests."""
import pytest


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    (tmp_path / "models").mkdir()
    return tmp_path / "models"
