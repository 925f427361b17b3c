"""Writers of weight files for tests, written from the formats' specifications (not convspec's readers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_safetensors(path: Path, arrays: dict) -> None:
    """u64 little-endian header length, a JSON header, then the raw little-endian data."""
    header, blobs, offset = {}, [], 0
    for key, array in arrays.items():
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[key] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    Path(path).write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))
