"""A diagram's scene as SVG text. Every name from the spec is escaped: XML's specials, and the
control characters that XML 1.0 cannot hold at all."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from .diagram import Line, Polygon, Rect, Scene, Text
from .errors import printable

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"  # the layout measures text as monospace


def _text(value: str) -> str:
    return escape(printable(value))


def _attr(value: str) -> str:
    return quoteattr(printable(value))


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _points(points) -> str:
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in points)


def _shape(shape) -> str:
    if isinstance(shape, Rect):
        return (f'<rect x="{_n(shape.left)}" y="{_n(shape.top)}" width="{_n(shape.width)}" '
                f'height="{_n(shape.height)}" rx="{_n(shape.radius)}" fill="{shape.fill}" '
                f'stroke="{shape.stroke}" stroke-width="{_n(shape.stroke_width)}"/>')
    if isinstance(shape, Line):
        return (f'<polyline points="{_points(shape.points)}" fill="none" stroke="{shape.color}" '
                f'stroke-width="{_n(shape.width)}"/>')
    if isinstance(shape, Polygon):
        return f'<polygon points="{_points(shape.points)}" fill="{shape.fill}"/>'
    if isinstance(shape, Text):
        weight = ' font-weight="bold"' if shape.bold else ""
        return (f'<text x="{_n(shape.x)}" y="{_n(shape.y)}" font-size="{_n(shape.size)}"{weight} '
                f'fill="{shape.color}">{_text(shape.text)}</text>')
    raise TypeError(f"no SVG for {type(shape).__name__}")


def to_svg(scene: Scene) -> str:
    width, height = _n(scene.width), _n(scene.height)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="{FONT}" text-anchor="middle" '
           'dominant-baseline="central">',
           f"<title>{_text(scene.title)}</title>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    for group in scene.groups:
        attrs = "".join(f" data-{key}={_attr(str(value))}" for key, value in group.attrs.items())
        out.append(f'<g class="{group.kind}"{attrs}>')
        out.extend(_shape(s) for s in group.shapes)
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
