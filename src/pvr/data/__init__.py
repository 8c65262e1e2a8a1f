"""Demonstration data: the zarr trajectory store, the legacy pickle, D4RL / robomimic / Minari, validation, conversion.

    ds = pvr.data.create("doorkey.zarr", env="MiniGrid-DoorKey-5x5-v0", meta={"expert": "bfs"})
    ds.append_episode(obs=..., action=..., true_state=...)
    ds = pvr.data.open("doorkey.zarr")            # or a legacy .pickle, read safely
    pvr.data.convert("old.pickle", "old.zarr")
    pvr.data.convert("door-human.hdf5", "door.zarr", env="HMS-door-v0")   # states only: re-rendered
    pvr.data.convert("doorkey.zarr", "minari:pvr/doorkey-v0", dst_format="minari")
"""
from pvr.data.convert import convert
from pvr.data.legacy import load_pickle, save_pickle
from pvr.data.store import Dataset, FrameArray, PickleDataset, ZarrDataset, create, open
from pvr.data.validate import validate_episode

__all__ = ["open", "create", "convert", "Dataset", "ZarrDataset", "PickleDataset", "FrameArray",
           "load_pickle", "save_pickle", "validate_episode"]
