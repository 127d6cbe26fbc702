"""Placing panels on Grafana's 24-column grid, left to right, wrapping into new lines."""

from __future__ import annotations

from dataclasses import dataclass

from dashboards.panels import Panel, Row

GRID_WIDTH = 24
ROW_HEIGHT = 1


@dataclass(frozen=True)
class GridPos:
    x: int
    y: int
    w: int
    h: int

    def to_json(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    def overlaps(self, other: GridPos) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )


def place(items: tuple[Panel | Row, ...]) -> list[tuple[Panel | Row, GridPos]]:
    """Grid positions for every item; a Row starts a new line of full width."""
    placed: list[tuple[Panel | Row, GridPos]] = []
    x = y = line_height = 0
    for item in items:
        if isinstance(item, Row):
            y += line_height
            placed.append((item, GridPos(0, y, GRID_WIDTH, ROW_HEIGHT)))
            y += ROW_HEIGHT
            x = line_height = 0
            continue
        if not 0 < item.width <= GRID_WIDTH:
            raise ValueError(f"panel {item.title!r}: width {item.width} outside 1..{GRID_WIDTH}")
        if x + item.width > GRID_WIDTH:
            y += line_height
            x = line_height = 0
        placed.append((item, GridPos(x, y, item.width, item.height)))
        x += item.width
        line_height = max(line_height, item.height)
    return placed
