"""A diagram's scene drawn with Pillow: the same shapes at the same places as the SVG."""

from __future__ import annotations

import io
import math

from .diagram import Line, Polygon, Rect, Scene, Text
from .errors import UsageError

MAX_PIXELS = 80_000_000  # 240 MB of RGB (ResNet-152 expanded is 43 M): past this, say so, not run out of memory
SMOOTH_PIXELS = 8_000_000  # up to this size, drawn at twice the size and scaled down: smooth slanted lines
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


def to_png(scene: Scene, collapsed: bool = False) -> bytes:
    """The PNG's bytes; `collapsed`: the scene is already one box per block (the hint then leaves --collapse out)."""
    require_pillow()
    from PIL import Image, ImageDraw

    width, height = math.ceil(scene.width), math.ceil(scene.height)
    if width * height > MAX_PIXELS:
        raise UsageError(f"the PNG would be {width:,} x {height:,} pixels, too large to draw; write an .svg "
                         "instead" + ("" if collapsed else ", or pass --collapse for one box per block"))
    scale = 2 if width * height <= SMOOTH_PIXELS else 1  # Pillow's lines have no antialiasing of their own
    image = Image.new("RGB", (width * scale, height * scale), "#ffffff")
    draw = ImageDraw.Draw(image)
    fonts = {}
    for group in scene.groups:
        for shape in group.shapes:
            _draw(draw, shape, fonts, scale)
    if scale != 1:
        image = image.resize((width, height), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False)
    return out.getvalue()


def _draw(draw, shape, fonts, scale: int) -> None:
    def at(*points):
        return [(x * scale, y * scale) for x, y in points]

    if isinstance(shape, Rect):
        box = at((shape.left, shape.top), (shape.left + shape.width, shape.top + shape.height))
        draw.rounded_rectangle(box, radius=shape.radius * scale, fill=shape.fill, outline=shape.stroke,
                               width=max(1, round(shape.stroke_width * scale)))
    elif isinstance(shape, Line):
        draw.line(at(*shape.points), fill=shape.color, width=max(1, round(shape.width * scale)), joint="curve")
    elif isinstance(shape, Polygon):
        draw.polygon(at(*shape.points), fill=shape.fill)
    elif isinstance(shape, Text):
        draw.text(at((shape.x, shape.y))[0], shape.text, fill=shape.color, anchor="mm",
                  font=_font(fonts, shape.size * scale, shape.bold))
    else:
        raise TypeError(f"no PNG drawing for {type(shape).__name__}")


def _font(fonts: dict, size: float, bold: bool):
    from PIL import ImageFont

    key = (size, bold)
    if key not in fonts:
        for name in FONTS[bold]:
            try:
                fonts[key] = ImageFont.truetype(name, round(size))
                break
            except OSError:
                continue
        else:
            fonts[key] = ImageFont.load_default(round(size))
    return fonts[key]
