"""A diagram's scene drawn with Pillow: the same shapes at the same places as the SVG."""

from __future__ import annotations

import io
import math

from .diagram import Line, Polygon, Rect, Scene, Text
from .errors import UsageError

MAX_PIXELS = 80_000_000  # 240 MB of RGB (ResNet-152 expanded is 43 M): past this, say so, not run out of memory
# Monospace like the SVG's; Pillow finds these in the system's font folders. Without them its
# built-in font is used, which is narrower, so text still fits its box.
FONTS = {False: ("DejaVuSansMono.ttf", "Menlo.ttc", "consola.ttf"),
         True: ("DejaVuSansMono-Bold.ttf", "Menlo.ttc", "consolab.ttf")}


def require_pillow() -> None:
    try:
        import PIL.ImageDraw  # noqa: F401
    except ImportError:
        raise UsageError("drawing a PNG needs Pillow, which is missing: pip install pillow "
                         "(or write an .svg, which needs nothing more)") from None


def to_png(scene: Scene) -> bytes:
    require_pillow()
    from PIL import Image, ImageDraw

    width, height = math.ceil(scene.width), math.ceil(scene.height)
    if width * height > MAX_PIXELS:
        raise UsageError(f"the PNG would be {width:,} x {height:,} pixels, too large to draw; write an .svg "
                         "instead, or pass --collapse for one box per block")
    image = Image.new("RGB", (width, height), "#ffffff")
    draw = ImageDraw.Draw(image)
    fonts = {}
    for group in scene.groups:
        for shape in group.shapes:
            _draw(draw, shape, fonts)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False)
    return out.getvalue()


def _draw(draw, shape, fonts) -> None:
    if isinstance(shape, Rect):
        box = (shape.left, shape.top, shape.left + shape.width, shape.top + shape.height)
        draw.rounded_rectangle(box, radius=shape.radius, fill=shape.fill, outline=shape.stroke,
                               width=max(1, round(shape.stroke_width)))
    elif isinstance(shape, Line):
        draw.line(shape.points, fill=shape.color, width=max(1, round(shape.width)), joint="curve")
    elif isinstance(shape, Polygon):
        draw.polygon(shape.points, fill=shape.fill)
    elif isinstance(shape, Text):
        draw.text((shape.x, shape.y), shape.text, fill=shape.color, anchor="mm", font=_font(fonts, shape))
    else:
        raise TypeError(f"no PNG drawing for {type(shape).__name__}")


def _font(fonts: dict, text: Text):
    from PIL import ImageFont

    key = (text.size, text.bold)
    if key not in fonts:
        for name in FONTS[text.bold]:
            try:
                fonts[key] = ImageFont.truetype(name, round(text.size))
                break
            except OSError:
                continue
        else:
            fonts[key] = ImageFont.load_default(round(text.size))
    return fonts[key]
