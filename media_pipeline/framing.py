"""Where a crop looks: points and boxes in 0..1 of the upright picture, aspects, and the focus
(focal point, subject box, faces) that crops keep."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Point:
    """A position in 0..1 of the upright picture (x from the left, y from the top)."""

    x: float
    y: float

    def to_dict(self) -> dict[str, float]:
        return {"x": round(self.x, 4), "y": round(self.y, 4)}


@dataclass(frozen=True)
class Box:
    """A rectangle in 0..1 of the upright picture."""

    x: float
    y: float
    w: float
    h: float

    @property
    def centre(self) -> Point:
        return Point(self.x + self.w / 2, self.y + self.h / 2)

    def to_dict(self) -> dict[str, float]:
        return {"x": round(self.x, 4), "y": round(self.y, 4), "w": round(self.w, 4), "h": round(self.h, 4)}


_ASPECT = re.compile(r"^([1-9][0-9]?):([1-9][0-9]?)$")


def parse_aspect(text: str) -> tuple[int, int] | None:
    """``"4:5"`` -> (4, 5); ``None`` when it is not A:B with A and B from 1 to 99."""
    match = _ASPECT.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


FOCUS_SOURCES = ("faces", "saliency", "centre", "user")


@dataclass(frozen=True)
class Focus:
    """Where the subject is: crops keep ``subject`` when it fits and centre on ``focal_point``.
    ``source``: faces, saliency, centre, or user (a focal point set through the API)."""

    focal_point: Point
    subject: Box
    source: str
    faces: tuple[Box, ...] = ()  # each face, so a crop that cannot hold them all cuts none

    def to_dict(self) -> dict[str, Any]:
        return {"focal_point": self.focal_point.to_dict(), "subject": self.subject.to_dict(), "source": self.source,
                "faces": [face.to_dict() for face in self.faces]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Focus":
        return cls(focal_point=Point(**data["focal_point"]), subject=Box(**data["subject"]), source=data["source"],
                   faces=tuple(Box(**face) for face in data.get("faces", ())))

    def with_user_point(self, point: Point | None) -> "Focus":
        """The focus a user-set focal point makes (the computed subject box and faces are kept for display)."""
        return self if point is None else Focus(focal_point=point, subject=self.subject, source="user", faces=self.faces)
