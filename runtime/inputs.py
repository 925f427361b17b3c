"""Model inputs: .npy, .npz, an image (PNG or JPEG, through Pillow), or seeded random data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import RuntimeFailure

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def random_input(shape, batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape), dtype=np.float32)


def load_input(path: str, shape, preprocess: dict) -> np.ndarray:
    """A float32 batch shaped (N, *shape); an array without the batch axis gets one."""
    p = Path(path)
    if not p.exists():
        raise RuntimeFailure(f"{path}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        array = _np_load(p)
    elif suffix == ".npz":
        with np.load(p, allow_pickle=False) as npz:
            if not npz.files:
                raise RuntimeFailure(f"{path}: the .npz holds no arrays")
            key = "input" if "input" in npz.files else npz.files[0]
            array = npz[key]
    elif suffix in IMAGE_SUFFIXES:
        array = load_image(p, shape, preprocess)
    else:
        raise RuntimeFailure(f"{path}: unknown input format '{p.suffix}'; use .npy, .npz, .png or .jpg")
    return check_shape(np.asarray(array, dtype=np.float32), shape, path)


def _np_load(p: Path):
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as e:
        raise RuntimeFailure(f"{p}: cannot read as .npy: {e}") from None


def check_shape(array: np.ndarray, shape, source: str) -> np.ndarray:
    shape = tuple(shape)
    if array.shape == shape:
        array = array[None]
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
        raise RuntimeFailure(f"{source}: input shape {list(array.shape)} does not fit the model; "
                             f"it expects [batch, {', '.join(map(str, shape))}] (or {list(shape)} for one sample)",
                             exit_code=1)
    return np.ascontiguousarray(array)


def load_image(path: Path, shape, preprocess: dict) -> np.ndarray:
    """Read, convert to the input's channels, resize, scale, normalise: as the spec's `preprocess:` says."""
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeFailure("reading images needs Pillow: pip install pillow") from None
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise RuntimeFailure(f"the model's input {list(shape)} is not an image ([1 or 3, H, W])")
    channels, height, width = shape
    size = preprocess.get("resize", [height, width])
    size = [size, size] if isinstance(size, int) else size
    if list(size) != [height, width]:
        raise RuntimeFailure(f"preprocess.resize {size} differs from the model's input {height}x{width}")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32)
    except OSError as e:
        raise RuntimeFailure(f"{path}: cannot read the image: {e}") from None
    array = array.reshape(height, width, channels).transpose(2, 0, 1) * np.float32(preprocess.get("scale", 1 / 255))
    mean = np.asarray(preprocess.get("mean", [0.0] * channels), np.float32).reshape(-1, 1, 1)
    std = np.asarray(preprocess.get("std", [1.0] * channels), np.float32).reshape(-1, 1, 1)
    return (array - mean) / std
