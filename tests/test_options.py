"""Keyword options checked against a settings value (geogan.options): functions that take their many settings
as ``**options`` refuse an unknown name in one line naming it and the nearest valid one, before any work;
passing the settings value or its fields as keywords is the same call."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from geogan.dream import DreamModel, StitchSettings, dream, dream_map, train_dream
from geogan.errors import GeoganError, InputError
from geogan.evaluate import train_segmenter
from geogan.models.dcgan import DCGANGenerator
from geogan.options import UnknownOptionError, check_names, with_options


@dataclass(frozen=True)
class _Tiling:
    tile_px: int = 256
    overlap_px: int = 64


def test_unknown_names_are_one_line_errors_naming_the_nearest():
    assert with_options(_Tiling(), {}, "f") == _Tiling()
    assert with_options(_Tiling(), {"overlap_px": 8}, "f") == _Tiling(256, 8)
    with pytest.raises(UnknownOptionError) as err:
        with_options(_Tiling(), {"tile_size": 128, "zzz": 1}, "render")
    text = str(err.value)
    assert "render()" in text and "'tile_size'" in text and "the nearest is 'tile_px'" in text and "\n" not in text
    assert isinstance(err.value, TypeError) and isinstance(err.value, InputError)  # Python's kind, and geogan's
    assert isinstance(err.value, GeoganError)
    check_names(["a"], ["a", "b"], "f")  # known names pass


def _model(seed: int = 0) -> DreamModel:
    torch.manual_seed(seed)
    card = {"classes": [str(i) for i in range(6)], "gsd_m": 4.0, "tile_px": 16, "z_dim": 8}
    return DreamModel(DCGANGenerator(8, 6, 8, 16).eval(), card)


def test_dream_map_takes_stitch_settings_as_a_value_or_as_keywords():
    model = _model()
    keywords = dream_map(model, (24, 40), 3, candidates=2, overlap_px=4, class_gains=[])
    value = dream_map(model, (24, 40), 3, StitchSettings(candidates=2, overlap_px=4, class_gains=[]))
    assert np.array_equal(keywords, value)
    with pytest.raises(InputError, match="candidates must be >= 1"):
        dream_map(model, (24, 40), candidates=0)


@pytest.mark.parametrize("call, words", [
    (lambda: dream_map(None, (8, 8), candidate=2), ("dream_map()", "'candidate'", "'candidates'")),
    (lambda: dream((0, 0, 1, 1), tile_size=64), ("dream()", "'tile_size'", "'tile_px'")),
    (lambda: train_dream(np.zeros((1, 8, 8), np.uint8), "unused", gsd=4.0), ("train_dream()", "'gsd_m'")),
    (lambda: train_segmenter("unused", "unused", step=3), ("train_segmenter()", "'step'", "'steps'")),
])
def test_unknown_keywords_are_refused_before_any_work(call, words):
    with pytest.raises(UnknownOptionError) as err:
        call()
    assert all(w in str(err.value) for w in words), str(err.value)


# ---------------------------------------------------------------- geogan.render / rasterize: named + **options
#: Every keyword of render()'s former 36-parameter signature (before it took **options).
FORMER_RENDER_KEYWORDS = (
    "osm", "bbox", "bbox_crs", "crs", "gsd_m", "out_dir", "model", "device", "tile_px", "overlap_px", "seed",
    "overwrite", "rules", "force", "class_field", "dem", "hillshade", "canopy", "scheduler", "workers", "osm_fetch",
    "sketch", "style_ref", "progress", "cancel", "compile", "compression", "precision", "res", "tap",
    "source_options", "mesh", "runtime", "style_colours", "fill")


def test_render_keywords_are_the_settings_fields():
    import dataclasses

    from geogan import settings
    from geogan.api import RENDER_KEYWORDS

    assert set(FORMER_RENDER_KEYWORDS) <= set(RENDER_KEYWORDS)
    values = (settings.SourceSettings, settings.AreaSettings, settings.ModelSettings, settings.TilingSettings,
              settings.HeightSettings, settings.OutputSettings, settings.RuntimeSettings)
    fields = {(cls, f.name) for cls in values for f in dataclasses.fields(cls)}
    hidden = {(settings.OutputSettings, "in_memory"), (settings.RuntimeSettings, "batch_tiles")}
    assert len(RENDER_KEYWORDS) == len(fields - hidden)  # a field added to a settings value is a keyword


def test_render_and_rasterize_refuse_an_unknown_keyword_before_any_work(tmp_path):
    import geogan

    with pytest.raises(UnknownOptionError) as err:
        geogan.render(out_dir=tmp_path / "o", tile_size=128)
    assert "'tile_size'" in str(err.value) and "the nearest is 'tile_px'" in str(err.value)
    with pytest.raises(UnknownOptionError, match="the nearest is 'out'"):
        geogan.rasterize(out_dir=tmp_path / "o")
    with pytest.raises(UnknownOptionError, match="'hillshade'"):  # a render keyword a class map does not use
        geogan.rasterize(out=tmp_path / "c.tif", hillshade=True)
    with pytest.raises(InputError, match="seed=-1 must be 0 or more"):  # values: the settings' own messages
        geogan.render(out_dir=tmp_path / "o", seed=-1)
    assert not (tmp_path / "o").exists() and not (tmp_path / "c.tif").exists()
