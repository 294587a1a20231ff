"""What a dream block holds (:func:`fill_block`): houses, apartments or industry along its curbs, a park with
footways, farmland, forest, a lake with a grassy shore, or nothing (unmapped ground, as in OSM).

Features are ``(geometry in local metres, OSM tags)``: the tags geogan's class rules read (``building``,
``landuse``, ``leisure``, ``natural``, ``highway`` with ``width``), so the town draws and renders like OSM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry

from .buildings import frontage_buildings, perimeter_buildings
from .skeleton import STREET_WIDTH_M
from .style import APARTMENTS, HOUSES, INDUSTRY, PERIMETER, BuildingStyle, TownStyle


@dataclass(frozen=True)
class Feature:
    geom: BaseGeometry
    tags: tuple[tuple[str, str], ...]

    @property
    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)


def feature(geom: BaseGeometry, **tags: str) -> Feature:
    """A feature with OSM tags (``building_levels`` -> ``building:levels``)."""
    return Feature(geom, tuple(sorted((k.replace("_", ":"), str(v)) for k, v in tags.items())))


FARM_HOUSES = replace(HOUSES, frontage_m=(70.0, 180.0), rows=1)


def use_weights(style: TownStyle, fringe: float) -> dict[str, float]:
    """Block-use weights at ``fringe`` (0: the centre's ``uses``, 1: ``outer_uses``), summing to 1."""
    w: dict[str, float] = {}
    for weights, k in ((style.uses, 1.0 - fringe), (style.outer_uses, fringe)):
        total = sum(x for _, x in weights)
        for use, x in weights:
            w[use] = w.get(use, 0.0) + k * x / total
    return w


def fringe_of(block: Polygon, style: TownStyle) -> float:
    """0 in the town's core, rising to 1 at ``core_m + fringe_m`` from the centre."""
    r = float(np.hypot(*np.asarray(block.centroid.coords[0])))
    return float(np.clip((r - style.core_m) / style.fringe_m, 0.0, 1.0))


def choose_use(block: Polygon, rng: np.random.Generator, style: TownStyle) -> str:
    w = use_weights(style, fringe_of(block, style))
    names = sorted(w)
    p = np.array([w[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _buildings(land: Polygon, bs: BuildingStyle, kind: str, rng: np.random.Generator) -> list[Feature]:
    out = []
    for shape in frontage_buildings(land, bs, rng):
        levels = int(rng.integers(bs.levels[0], bs.levels[1] + 1))
        roof = bs.roof if shape.area > 45 else "flat"
        out.append(feature(shape, building=kind if shape.area > 45 else "shed", building_levels=str(levels),
                           roof_shape=roof))
    return out


def _blob(land: Polygon, rng: np.random.Generator, fill: float) -> BaseGeometry:
    """A smooth lake-like shape around the land's inner point, about ``fill`` of its inset area."""
    inner = land.buffer(-12.0)
    if inner.is_empty:
        return inner
    c = np.asarray(inner.representative_point().coords[0])
    theta = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    r = np.ones_like(theta)
    for k in (2, 3, 4):
        r += rng.uniform(0.0, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    radius = math.sqrt(fill * inner.area / math.pi)
    ring = Polygon(np.stack([c[0] + radius * r * np.cos(theta), c[1] + radius * r * np.sin(theta)], 1))
    return ring.intersection(inner).buffer(-6.0).buffer(6.0)


def _footways(park: Polygon, rng: np.random.Generator, n: int) -> list[Feature]:
    """``n`` footways across a park through points near its middle."""
    out = []
    c = np.asarray(park.representative_point().coords[0])
    reach = math.sqrt(park.area)
    for _ in range(n):
        a = rng.uniform(0, math.pi)
        d = np.array([math.cos(a), math.sin(a)])
        p = c + rng.normal(0, 0.1 * reach, 2)
        line = park.intersection(LineString([p - d * 2 * reach, p + d * 2 * reach]))
        for g in shapely.get_parts(line):
            if isinstance(g, LineString) and g.length > 20:
                out.append(feature(g, highway="footway", width=f"{STREET_WIDTH_M['footway']:g}"))
    return out


def _green(land: Polygon, use: str, rng: np.random.Generator) -> list[Feature]:
    """Parks, lakes, farmland and forest (with a few farm houses along the road)."""
    if use == "park":
        park = land.buffer(-2.0)
        return [feature(park, leisure="park"), *_footways(park, rng, int(rng.integers(1, 3)))]
    if use == "lake":
        water = _blob(land, rng, rng.uniform(0.45, 0.7))
        return [feature(land.buffer(-2.0), leisure="park"), feature(water, natural="water")]
    if use == "forest":
        return [feature(land.buffer(-rng.uniform(0.0, 8.0)), landuse="forest")]
    # farmland: the fields keep off the road; a few farm houses stand in between
    fields = land.buffer(-rng.uniform(18.0, 30.0))
    return [feature(fields, landuse="farmland"), *_buildings(land.difference(fields), FARM_HOUSES, "house", rng)]


def _city(land: Polygon, use: str, rng: np.random.Generator) -> list[Feature]:
    """A perimeter block (buildings along its edge, a courtyard) or a paved square."""
    if use == "square":
        return [feature(land.buffer(-1.0), place="square")]
    out = []
    for shape in perimeter_buildings(land, PERIMETER, rng):
        tall = shape.area > 120
        out.append(feature(shape, building="apartments" if tall else "yes", roof_shape="flat",
                           building_levels=str(int(rng.integers(*PERIMETER.levels)) if tall else 1)))
    return out


def _built(land: Polygon, use: str, rng: np.random.Generator) -> list[Feature]:
    """Houses, apartments, industry (on industrial land)."""
    if use in ("perimeter", "square"):
        return _city(land, use, rng)
    if use == "houses":
        return _buildings(land, HOUSES, "house", rng)
    if use == "apartments":
        return _buildings(land, APARTMENTS, "apartments", rng)
    return [feature(land.buffer(-1.0), landuse="industrial"), *_buildings(land, INDUSTRY, "industrial", rng)]


def fill_block(land: Polygon, use: str, rng: np.random.Generator) -> list[Feature]:
    """The features of one block: ``land`` is the block less its streets (local metres)."""
    if land.is_empty or land.area < 100:
        return []
    if use in ("houses", "apartments", "industry", "perimeter", "square"):
        return _built(land, use, rng)
    if use in ("park", "lake", "forest", "farmland"):
        main = max(shapely.get_parts(land), key=lambda g: g.area)  # the largest piece of a cut-up block
        return [f for f in _green(main, use, rng) if not f.geom.is_empty]
    return []  # empty: unmapped ground
