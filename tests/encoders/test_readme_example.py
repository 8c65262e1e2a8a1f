"""The README's "your own encoder" example runs as written."""
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Encoders and weights"):]
    section = section[:section.index("\n## ", 5)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_user_encoder_example_runs(tmp_path):
    make_weights, my_encoders, use = python_blocks()
    assert my_encoders.startswith("# my_encoders.py")
    (tmp_path / "my_encoders.py").write_text(my_encoders)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PVR_MODEL_PATH": str(tmp_path / "models")}
    for code in (make_weights, use):
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    assert "torch.Size([4, 512])" in r.stdout and "torch.Size([4, 16])" in r.stdout
    # without the checkpoint: one clear error naming the file, not random weights
    import pytest

    import pvr.encoders as E
    from pvr.encoders.registry import ENCODERS

    E.register_timm("readme_missing", "resnet18", checkpoint="nowhere_resnet18.pth")
    try:
        assert not E.info("readme_missing")["present"]
        with pytest.raises(E.PvrError, match="nowhere_resnet18.pth"):
            E.create("readme_missing")
    finally:
        ENCODERS._entries.pop("readme_missing", None)
