"""The render core (geogan.core) and its settings values (geogan.settings).

* every settings value checks its own fields at construction, with the API's one-line messages;
* ``request_from_kwargs`` turns render()'s keywords into one typed request and refuses unknown names;
* a render wires the grid once, checks its size once and derives the ground scale once per tile row;
* the QGIS worker renders through the typed request (an unknown key is a one-line error).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
from pathlib import Path

import pytest
import rasterio

import geogan.core as core
from geogan.api import request_from_kwargs, sample_osm_path
from geogan.errors import GeoganError, GridError, InputError
from geogan.grid import Grid
from geogan.settings import (AreaSettings, OutputSettings, RenderRequest, RuntimeSettings, SourceSettings,
                             TilingSettings)

ROOT = Path(__file__).resolve().parents[1]
BBOX = (25.697, 60.398, 25.6995, 60.3995)  # a corner of the sample town


@pytest.mark.parametrize("make, error, words", [
    (lambda: RuntimeSettings(seed=-1), InputError, ("seed=-1", "0 or more")),
    (lambda: RuntimeSettings(workers=0), InputError, ("workers=0", "1 or more", "render in this process")),
    (lambda: RuntimeSettings(progress=5), InputError, ("progress=5", "not callable")),
    (lambda: RuntimeSettings(batch_tiles=0), InputError, ("batch_tiles=0", "1 or more")),
    (lambda: TilingSettings(tile_px="256"), InputError, ("tile_px='256'", "whole number")),
    (lambda: TilingSettings(tile_px=8), InputError, ("tile size 8 px is too small",)),
    (lambda: TilingSettings(tile_px=64, overlap_px=40), InputError, ("overlap 40 px", "half the tile size")),
    (lambda: OutputSettings(compression="lzw"), InputError, ("unknown compression 'lzw'", "--compress")),
    (lambda: AreaSettings(gsd_m="1"), GridError, ("gsd_m='1'", "not a number")),
    (lambda: AreaSettings(crs="EPSG:4978"), GridError, ("--crs EPSG:4978", "geocentric")),
    (lambda: RenderRequest(SourceSettings(sketch="town.png")), InputError, ("sketch is placed by --bbox",)),
])
def test_settings_check_their_fields_at_construction(make, error, words):
    with pytest.raises(error) as err:
        make()
    msg = str(err.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg


def test_settings_are_frozen_values():
    tiling = TilingSettings(128)
    assert tiling.spec().overlap_px == 32 and tiling == TilingSettings(128)
    assert OutputSettings(compression=" ZSTD ").compression == "zstd"
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiling.tile_px = 64  # type: ignore[misc]


def test_request_from_render_keywords():
    request = request_from_kwargs({"tile_px": 128, "seed": 7, "hillshade": True, "gsd_m": 1.0, "out_dir": "x"})
    assert request.settings.tiling == TilingSettings(128, None)
    assert request.settings.runtime.seed == 7 and request.settings.heights.hillshade
    assert request.area.gsd_m == 1.0 and request.output.out_dir == Path("x")
    assert request.model.name == "default" and request.output.compression == "deflate"  # render()'s defaults
    with pytest.raises(InputError) as err:
        request_from_kwargs({"tile_size": 128})
    assert "'tile_size'" in str(err.value) and "tile_px" in str(err.value) and "\n" not in str(err.value)


def test_one_grid_one_size_check_one_ground_scale_per_tile_row(tmp_path, tiny_model, monkeypatch):
    calls = {"grid": 0, "check": 0, "gsd": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(core, "area_grid", counted("grid", core.area_grid))
    monkeypatch.setattr(core, "check_size", counted("check", core.check_size))
    many = Grid.gsd_m_at_many

    def points_counted(self, rows, cols):  # ground scales computed, counted per point
        calls["gsd"] += len(rows)
        return many(self, rows, cols)
    monkeypatch.setattr(Grid, "gsd_m_at_many", points_counted)
    res = core.run(request_from_kwargs({"osm": sample_osm_path(), "bbox": BBOX, "out_dir": tmp_path / "o",
                                        "model": str(tiny_model), "tile_px": 64, "overlap_px": 16}))
    # the generator runs at its native GSD on the canonical grid (geogan.anchor): no per-row rescaling, so the
    # ground scale is computed once at the canonical grid's centre and once at the output grid's
    assert calls == {"grid": 1, "check": 1, "gsd": 2}
    with rasterio.open(res.aerial) as ds:
        assert ds.shape == res.grid.shape_yx


def _worker():
    spec = importlib.util.spec_from_file_location("geogan_qgis_worker", ROOT / "qgis_plugin/geogan_qgis/worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._out = io.StringIO()  # the protocol stream
    return module


def test_qgis_worker_renders_a_typed_request(tmp_path, tiny_model):
    worker = _worker()
    kwargs = {"osm": [str(sample_osm_path())], "bbox": list(BBOX), "out_dir": str(tmp_path / "o"),
              "model": str(tiny_model), "tile_px": 64, "overwrite": True}
    with pytest.raises(GeoganError) as err:  # a key render() does not take: one line, before any work
        worker.op_render({**kwargs, "tile_size": 64}, lambda: False)
    assert "'tile_size'" in str(err.value) and not (tmp_path / "o").exists()
    result = worker.op_render(kwargs, lambda: False)
    assert Path(result["aerial"]).is_file() and {c["name"] for c in result["schema"]} >= {"building", "road"}
    assert '"type": "progress"' in worker._out.getvalue()
