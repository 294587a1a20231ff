"""Heights from OSM tags (metres above local ground)."""

from __future__ import annotations

from typing import Mapping

from .classes import parse_length_m, parse_number

STOREY_HEIGHT_M = 3.0

# Default total height in metres by building=* value when no height tag exists.
DEFAULT_BUILDING_HEIGHT_M = {
    "house": 7.0, "detached": 7.0, "semidetached_house": 7.0, "terrace": 8.0, "residential": 9.0,
    "bungalow": 4.5, "cabin": 4.0, "hut": 3.0, "shed": 3.0, "garage": 3.0, "garages": 3.0, "carport": 3.0,
    "roof": 4.0, "apartments": 15.0, "dormitory": 12.0, "hotel": 18.0, "office": 18.0, "commercial": 12.0,
    "retail": 7.0, "supermarket": 7.0, "kiosk": 3.0, "industrial": 10.0, "warehouse": 10.0,
    "factory": 12.0, "manufacture": 12.0, "barn": 8.0, "farm": 7.0, "farm_auxiliary": 6.0,
    "greenhouse": 4.0, "church": 18.0, "chapel": 8.0, "cathedral": 30.0, "mosque": 15.0,
    "temple": 12.0, "school": 10.0, "university": 15.0, "hospital": 18.0, "public": 10.0,
    "civic": 10.0, "government": 12.0, "train_station": 10.0, "transportation": 8.0,
    "stadium": 20.0, "sports_hall": 10.0, "parking": 10.0, "service": 4.0, "transformer_tower": 6.0,
    "water_tower": 20.0, "tower": 25.0, "yes": 8.0,
}
DEFAULT_HEIGHT_M = 8.0


def building_height_m(tags: Mapping[str, str], storey_height_m: float = STOREY_HEIGHT_M) -> float:
    """Total height of a building top above ground, from OSM tags.

    Order: ``height``; ``building:levels`` (+ ``roof:levels``) x storey height
    (+ ``roof:height``); a default by ``building`` type.
    """
    h = parse_length_m(tags.get("height"))
    if h is not None and h > 0:
        return h
    levels = parse_number(tags.get("building:levels"))
    if levels is not None and levels > 0:
        roof = parse_length_m(tags.get("roof:height"))
        roof_levels = parse_number(tags.get("roof:levels")) or 0.0
        return levels * storey_height_m + (roof if roof is not None else roof_levels * storey_height_m)
    kind = tags.get("building") or tags.get("building:part") or "yes"
    return DEFAULT_BUILDING_HEIGHT_M.get(kind, DEFAULT_HEIGHT_M)
