"""A `compile --raw-input` model resizes an image as `convspec run IMAGE` does: as Pillow's bilinear
(torchvision's Resize), border pixels included.

The reference is Pillow itself, on the same image. ONNX Resize's antialiasing filter, left at
its default, reaches past the image's edge and is not renormalised there, unlike Pillow's and
torch's; `exclude_outside` makes it so. Without it the border rows and columns differ by up to
15 levels of 255 on a noisy image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from clirun import run_cli


def test_a_raw_input_model_resizes_the_borders_as_pillow_does(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)  # noise: every edge shows
    Image.fromarray(pixels).save(tmp_path / "noise.png")
    (tmp_path / "s.yaml").write_text("input: [3, 24, 24]\npreprocess: {resize: [24, 24], scale: 1}\nlayers: [relu]\n")
    for args in (["compile", "s.yaml", "-o", "raw.onnx", "--raw-input"],
                 ["run", "raw.onnx", "--input", "noise.png", "-o", "out.npy"]):
        proc = run_cli(tmp_path, *args)
        assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "out.npy")[0]  # the pixels, resized in the graph, through relu (all >= 0)
    want = np.asarray(Image.fromarray(pixels).resize((24, 24), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1)
    # Pillow rounds to 8 bits (up to half a level per pass), the graph does not
    assert np.abs(got - want).max() < 1.0, np.abs(got - want).max()
    assert np.abs(got - want).mean() < 0.3
