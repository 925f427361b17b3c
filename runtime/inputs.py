"""Model inputs: .npy, .npz, an image (PNG or JPEG, through Pillow), or seeded random data."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from compiler.arrays import Stored, read_npy, read_npz
from compiler.errors import RunError, printable
from compiler.preprocess import crop_box, resize_of, resized

from .session import captured_stderr

MAX_IMAGE_PIXELS = 40_000_000  # a 40-megapixel photo; beyond that (and 64x the input), an image is refused
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def random_input(info, batch: int, seed: int) -> np.ndarray:
    """`batch` samples of seeded random data for the model of `info` (a runtime.model.ModelInfo)."""
    if info.fixed_batch and info.fixed_batch != batch:
        raise RunError(f"the model's batch size is fixed at {info.fixed_batch}; use --batch {info.fixed_batch}",
                       exit_code=1)
    shape = info.input_shape
    if info.raw_size:  # raw pixels, at the size the model's preprocessing suggests
        return np.random.default_rng(seed).integers(0, 256, (batch, *info.raw_size, shape[-1]), dtype=np.uint8)
    if any(d is None for d in shape):
        raise RunError(f"the model's input has dynamic sizes {['?' if d is None else d for d in shape]}; "
                       "pass --input with an array", exit_code=1)
    return np.random.default_rng(seed).standard_normal((batch, *shape), dtype=np.float32)


def load_input(path: str, shape, preprocess: dict, max_bytes: int) -> np.ndarray:
    """A float32 batch shaped (N, *shape); an array without the batch axis gets one.

    An array file's dtype and shape are checked from its header, before its data is read: the
    batch it claims may cost at most `max_bytes` as float32. A warning that reading the file
    raises (Pillow's, numpy's) is printed as one line naming the file.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _load_input(path, shape, preprocess, max_bytes)
        finally:
            for w in caught:
                print(printable(f"warning: {path}: {w.message}"), file=sys.stderr)


def _load_input(path: str, shape, preprocess: dict, max_bytes: int) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise RunError(f"{path}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        array = read_npy(p) if suffix == ".npy" else _npz_input(p)
    elif suffix in IMAGE_SUFFIXES:
        array = Stored.of(load_image(p, shape, preprocess))
    else:
        raise RunError(f"{path}: unknown input format '{p.suffix}'; use .npy, .npz, .png or .jpg")
    if array.dtype.kind not in "biuf":
        raise RunError(f"{path}: its values are {array.dtype}; the model takes real numbers (floats, or "
                       "integers and booleans, which become float32)", exit_code=1)
    batched = batch_shape(array.shape, shape, path)
    if 4 * array.size > max_bytes:
        raise RunError(f"{path}: the input {list(batched)} is {4 * array.size:,} bytes as float32, more than the "
                       f"limit of {max_bytes:,}; check the file, or raise the limit with --max-input-bytes",
                       exit_code=1)
    with np.errstate(all="ignore"):  # float64 past float32's range becomes inf, warned about below
        array = np.ascontiguousarray(array.load().reshape(batched), dtype=np.float32)
    if not np.isfinite(array).all():
        bad = array.size - np.count_nonzero(np.isfinite(array))
        print(printable(f"warning: {path}: {bad} of {array.size} input values are NaN or Inf"), file=sys.stderr)
    return array


def calibration_set(path: str, shape, preprocess: dict, max_bytes: int) -> np.ndarray:
    """Inputs to calibrate quantisation on: a folder's images (by name, through `preprocess`), or
    an array file as `load_input` reads it; at most `max_bytes` as float32, every value finite."""
    p = Path(path)
    if not p.is_dir():
        inputs = load_input(path, shape, preprocess, max_bytes)
    else:
        images = folder_images(p)
        size = 4 * len(images) * int(np.prod(shape))
        if size > max_bytes:
            raise RunError(f"{path}: {len(images)} images make {size:,} bytes of float32 inputs, more than the limit "
                           f"of {max_bytes:,}; calibrate on fewer (a few hundred are plenty)", exit_code=1)
        inputs = np.stack([load_image(image, shape, preprocess) for image in images])
    if not np.isfinite(inputs).all():
        raise RunError(f"{path}: NaN or Inf inputs cannot calibrate int8 scales", exit_code=1)
    return inputs


def folder_images(folder: Path) -> list[Path]:
    """The images of a folder, sorted by name; an error if it cannot be listed or has none."""
    try:
        images = sorted(e for e in folder.iterdir() if e.suffix.lower() in IMAGE_SUFFIXES and e.is_file())
    except OSError as e:
        raise RunError(f"{folder}: cannot list the folder: {e.strerror or e}") from None
    if not images:
        raise RunError(f"{folder}: the folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def _npz_input(p: Path) -> Stored:
    """The array named `input`, or the only one."""
    arrays = read_npz(p)
    if "input" in arrays:
        return arrays["input"]
    if len(arrays) != 1:
        raise RunError(f"{p}: the .npz holds {len(arrays)} arrays ({', '.join(list(arrays)[:8])}); "
                       "name the one to feed 'input'")
    return next(iter(arrays.values()))


def batch_shape(dims: tuple, shape, source: str) -> tuple:
    """`dims` with a batch axis, if they fit the model's input `shape` (None: any size)."""
    shape, dims = tuple(shape), tuple(dims)

    def fits(d):
        return len(d) == len(shape) and all(s is None or n == s for n, s in zip(d, shape))

    if fits(dims):
        dims = (1, *dims)
    if len(dims) != len(shape) + 1 or not fits(dims[1:]) or 0 in dims:
        raise RunError(f"{source}: input shape {list(dims)} does not fit the model; "
                       f"it expects [batch, {', '.join('?' if d is None else str(d) for d in shape)}] "
                       "(or the same without the batch for one sample)",
                       exit_code=1)
    return dims


def load_image(path: Path, shape, preprocess: dict) -> np.ndarray:
    """Read, convert to the input's channels, resize, scale, normalise: as the spec's `preprocess:` says."""
    try:
        from PIL import Image
    except ImportError:
        raise RunError("reading images needs Pillow: pip install pillow") from None
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise RunError(f"the model's input {list(shape)} is not an image ([1 or 3, H, W])")
    channels, height, width = shape
    for key in ("mean", "std"):
        if len(preprocess.get(key, [0])) not in (1, channels):
            raise RunError(f"the model's preprocess.{key} has {len(preprocess[key])} values for {channels} "
                           "channels; re-export the model", exit_code=1)
    # Pillow's notes on damaged files are noise here (warnings such as "Corrupt EXIF data", log records
    # such as "More samples per pixel than can be decoded", which Python would print for want of a
    # handler), and so is what libtiff writes straight to file descriptor 2: the decoder's
    # exception says what matters.
    _quiet_logger("PIL")
    with warnings.catch_warnings(), captured_stderr():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # an error, not a printed warning
        try:
            with Image.open(path) as image:  # reads the header only
                if image.width * image.height > max(MAX_IMAGE_PIXELS, 64 * width * height):
                    raise RunError(f"{path}: the image is {image.width}x{image.height}, far larger than the "
                                   f"model's input {height}x{width}; resize it first", exit_code=1)
                if image.mode == "F":  # a float TIFF: no range to map to 0..255
                    raise RunError(f"{path}: its pixels are floating point, whose range is unknown; save them as "
                                   ".npy instead", exit_code=1)
                array = _pixels(image, channels, preprocess, shape, path)
        except (RunError, MemoryError):
            raise
        except Exception as e:  # Pillow's decoders raise what their parsers hit on damaged bytes: OSError,
            # SyntaxError (PNG), NotImplementedError (DDS), TypeError (TIFF, IM), struct.error, ...
            raise RunError(f"{path}: cannot read the image: {str(e) or type(e).__name__}") from None
    if array.shape[:2] != (height, width):
        raise RunError(f"the model's preprocess makes {path} {array.shape[0]}x{array.shape[1]}, but its input is "
                       f"{height}x{width}; re-export the model", exit_code=1)
    if preprocess.get("channels", "RGB") == "BGR":
        array = array[:, :, ::-1]
    array = array.transpose(2, 0, 1) * np.float32(preprocess.get("scale", 1 / 255))
    mean = np.asarray(preprocess.get("mean", [0.0] * channels), np.float32).reshape(-1, 1, 1)
    std = np.asarray(preprocess.get("std", [1.0] * channels), np.float32).reshape(-1, 1, 1)
    return (array - mean) / std


def _quiet_logger(name: str) -> None:
    """Give a library's logger a handler that drops its records, once."""
    import logging

    logger = logging.getLogger(name)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def _pixels(image, channels: int, preprocess: dict, shape, path) -> np.ndarray:
    """(H, W, C) float32 on the 8-bit scale 0..255 whatever the file's depth, so preprocess.scale
    (1/255 by default) maps every image to [0, 1], resized and cropped as `preprocess` says
    (compiler/preprocess.py). Pillow keeps 16-bit grey (PNG, TIFF, PGM) as mode I;16 or I, and its
    conversion to L or RGB clips at 255: such values are divided by 257."""
    from PIL import Image

    grey16 = image.mode.startswith("I")
    image = image.convert("F" if grey16 else "L" if channels == 1 else "RGB")
    resize = resize_of(preprocess, shape)
    if resize is not None:
        height, width = resized((image.height, image.width), resize)
        if height * width > max(MAX_IMAGE_PIXELS, 64 * shape[1] * shape[2]):
            raise RunError(f"{path}: resizing the {image.width}x{image.height} image as the model's preprocess "
                           f"says makes it {width}x{height}; crop it nearer to square first", exit_code=1)
        image = image.resize((width, height), Image.BILINEAR)
    if "crop" in preprocess:
        top, left, height, width = crop_box((image.height, image.width), preprocess["crop"])
        if top < 0 or left < 0:
            raise RunError(f"{path}: the image is {image.width}x{image.height} when the model crops its centre "
                           f"{width}x{height}; use a larger image", exit_code=1)
        image = image.crop((left, top, left + width, top + height))
    array = np.asarray(image, dtype=np.float32)
    if grey16:
        return np.repeat((array / np.float32(257))[:, :, None], channels, axis=2)
    return array.reshape(image.height, image.width, channels)


def load_raw_input(path: str, channels: int, max_bytes: int, preprocess: dict) -> np.ndarray:
    """Pixels for a model compiled with --raw-input: uint8 [N, H, W, C], from an image as it is
    (the model preprocesses it) or from a uint8 .npy/.npz of [N, H, W, C] or [H, W, C]. An image
    that the model's resize would blow up (a 1-pixel strip to N pixels high) is refused."""
    p = Path(path)
    if not p.exists():
        raise RunError(f"{path}: no such file")
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        pixels = _raw_image(p, channels)
        height, width = resized(pixels.shape[:2], preprocess.get("resize"))
        if height * width > MAX_IMAGE_PIXELS:
            raise RunError(f"{path}: the model's preprocess resizes the {pixels.shape[1]}x{pixels.shape[0]} image to "
                           f"{width}x{height}; crop it nearer to square first", exit_code=1)
        return pixels[None]
    if suffix not in (".npy", ".npz"):
        raise RunError(f"{path}: unknown input format '{p.suffix}'; use .png, .jpg, .npy or .npz")
    stored = read_npy(p) if suffix == ".npy" else _npz_input(p)
    dims = tuple(stored.shape)
    if stored.dtype != np.uint8 or len(dims) not in (3, 4) or dims[-1] != channels or 0 in dims:
        raise RunError(f"{path}: {stored.dtype} {list(dims)}; the model takes raw pixels, uint8 [batch, height, "
                       f"width, {channels}] (or without the batch)", exit_code=1)
    if stored.size > max_bytes:
        raise RunError(f"{path}: the input is {stored.size:,} bytes, more than the limit of {max_bytes:,}; raise it "
                       "with --max-input-bytes", exit_code=1)
    array = stored.load()
    return np.ascontiguousarray(array if array.ndim == 4 else array[None])


def _raw_image(path: Path, channels: int) -> np.ndarray:
    """(H, W, C) uint8, as the file holds it (16-bit grey divided by 257)."""
    from PIL import Image

    _quiet_logger("PIL")
    with warnings.catch_warnings(), captured_stderr():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise RunError(f"{path}: the image is {image.width}x{image.height}, more than "
                                   f"{MAX_IMAGE_PIXELS:,} pixels; resize it first", exit_code=1)
                if image.mode == "F":
                    raise RunError(f"{path}: its pixels are floating point; a raw-input model takes 8-bit images",
                                   exit_code=1)
                if image.mode.startswith("I"):
                    grey = np.asarray(image.convert("F"), np.float32) / np.float32(257)
                    array = np.repeat(np.clip(np.round(grey), 0, 255).astype(np.uint8)[:, :, None], channels, axis=2)
                else:
                    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8)
        except (RunError, MemoryError):
            raise
        except Exception as e:  # as load_image: whatever a decoder raises on damaged bytes
            raise RunError(f"{path}: cannot read the image: {str(e) or type(e).__name__}") from None
    return array.reshape(array.shape[0], array.shape[1], channels)
