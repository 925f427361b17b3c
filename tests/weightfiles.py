"""Writers of weight files for tests, written from the formats' specifications (not convspec's readers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_safetensors(path: Path, arrays: dict) -> None:
    """u64 little-endian header length, a JSON header, then the raw little-endian data."""
    header, offset = {}, 0
    for key, array in arrays.items():
        nbytes = array.size * 4
        header[key] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for array in arrays.values():  # one tensor at a time: no copy of the whole file in memory
            f.write(memoryview(np.ascontiguousarray(array, dtype="<f4")).cast("B"))
