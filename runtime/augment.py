"""Running an augmentation graph (`convspec compile --augment`) on images: a preview grid, or a
dataset in batches.

The graph's inputs are `images` [N, C, H, W] in [0, 1], `seed` and `offset` (int64 scalars); its
outputs `pixels` (augmented, in [0, 1]) and `input` (normalised for the network). An image's
augmentation depends on the seed and its index in the list only, not on the batch size.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from compiler.errors import RunError

from .inputs import IMAGE_SUFFIXES, folder_images, load_image


def image_paths(paths: list[str]) -> list[Path]:
    """The images named: files as given, folders as their images sorted by name."""
    out = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            out += folder_images(p)
        elif not p.exists():
            raise RunError(f"{path}: no such file")
        elif p.suffix.lower() not in IMAGE_SUFFIXES:
            raise RunError(f"{path}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
        else:
            out.append(p)
    return out


def read_images(paths: list[Path], shape: tuple) -> np.ndarray:
    """[N, C, H, W] float32 pixels in [0, 1], each image resized to `shape`'s [H, W]."""
    return np.stack([load_image(p, shape, {}) for p in paths])  # preprocess {}: scale 1/255 only


def augment(session, images: np.ndarray, seed: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, input) of a batch whose first image is number `offset` of the dataset."""
    feeds = {"images": images, "seed": np.array(seed, np.int64), "offset": np.array(offset, np.int64)}
    pixels, normalised = session.run(feeds)
    return pixels, normalised


def augment_all(session, paths: list[Path], shape: tuple, seed: int, batch: int, progress=None) -> np.ndarray:
    """The network inputs of every image, read and augmented `batch` at a time."""
    out = []
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        out.append(augment(session, read_images(chunk, shape), seed, start)[1])
        if progress:
            progress(start + len(chunk), len(paths))
    return np.concatenate(out)


def grid_png(pixels: np.ndarray, gap: int = 2) -> bytes:
    """The images [N, C, H, W] in [0, 1], tiled in a near-square grid on white, as PNG bytes."""
    try:
        from PIL import Image
    except ImportError:
        raise RunError("writing a preview needs Pillow: pip install pillow (or install convspec's "
                       "'images' extra)") from None
    n, c, h, w = pixels.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, c), 255, np.uint8)
    tiles = np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for k, tile in enumerate(tiles):
        top, left = gap + (k // cols) * (h + gap), gap + (k % cols) * (w + gap)
        canvas[top:top + h, left:left + w] = tile
    buffer = io.BytesIO()
    Image.fromarray(canvas[:, :, 0] if c == 1 else canvas).save(buffer, format="PNG")
    return buffer.getvalue()


