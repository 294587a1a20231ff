"""Fake towns: a procedural town (streets first, then separate buildings per block) or an unconditional DCGAN
dreams class maps, geogan renders them.

The procedural town (the default of ``geogan dream``): :mod:`.style` (looks as values), :mod:`.skeleton`
(the street network by recursive block subdivision), :mod:`.buildings` (separate footprints along the
curbs), :mod:`.blocks` (what a block holds), :mod:`.town` (the town as OSM-tagged features, written as a
GeoPackage) and :mod:`.structure` (building, block and street-network statistics against real OSM maps).

The DCGAN (``geogan dream --model dream``):

One module per concern: :mod:`.data` (class tiles from OSM), :mod:`.model` (model files),
:mod:`.losses` and :mod:`.train` (training), :mod:`.stats` (statistics), :mod:`.stitch`
(seamless maps of any size) and :mod:`.on_grid` (a dream on a real grid, rendered). Everything
public is importable from ``geogan.dream`` itself.

Three steps:

1. :func:`class_tiles_from_osm` rasterizes real OpenStreetMap data at a coarse
   GSD (4-8 m, so a 64 px tile holds a street pattern) and cuts it into class
   tiles, skipping tiles that are mostly unmapped background.
2. :func:`train_dream` trains a DCGAN (:mod:`geogan.models.dcgan`) on the
   tiles as one-hot maps (randomly rotated/flipped; the generator's one-hot
   argmax with straight-through softmax gradients, low-passed logits, against
   real one-hots, both with instance noise), with a minibatch-stddev channel
   in the discriminator, a slower discriminator (TTUR), a mode-seeking term
   and an EMA of the generator against mode collapse, a class-marginal term
   (:func:`class_marginal_loss`) against losing thin classes such as roads,
   measured at every checkpoint by :func:`dream_tile_stats` (class fractions,
   diversity, and :func:`line_stats` of the street network); resumable through
   :func:`~geogan.models.checkpoint.save_training_state`,
   and exports the generator as ``NAME.safetensors`` + ``NAME.json`` (a
   ``geogan-dream/1`` card: classes, GSD, tile size, z_dim, training data
   and its licence).
3. :func:`dream_map` dreams a class map larger than one tile: overlapping
   tiles whose latent vectors are a smooth function of position (a lattice of
   position-hashed Gaussian latents, interpolated bilinearly with the variance
   kept at one) so neighbouring tiles share latents; the tiles' softmax
   outputs are blended with geogan's raised-cosine window
   (:func:`geogan.blend.blend_weights`, streamed by :class:`~geogan.blend.StripBlender`)
   before the argmax, and small specks are sieved away. Same seed, same map.
   Each tile picks among position-seeded latent candidates the one agreeing
   best with its placed neighbours, rare classes weighing more; per-class
   gains from the card (:func:`calibrate_thin_gains`, written at export by
   :func:`calibrate_dream_model`) keep the roads and paths that blending would
   average away.

:func:`dream` puts a dream on the real grid of a bbox (the model's native GSD
resampled, nearest, to the output GSD), writes ``dream_classes.tif`` and
renders it to aerial + height with a conditional model through
:func:`geogan.api.render`'s sketch path (the class map is handed over as an
exactly palette-coloured PNG with the grid's own shape, so it maps 1:1).
"""

from .data import class_tiles_from_osm, palette_rgb
from .losses import FAKE_MODES, class_marginal_loss, mode_seeking_loss
from .model import (DEFAULT_MODEL_NAME, DREAM_FORMAT, OSM_ATTRIBUTION, OSM_LICENSE, DreamModel, load_dream_model,
                    resolve_dream_model, sample_tiles, save_dream_model)
from .on_grid import (DREAM_CLASSES, DREAM_TOWN, STREETS_GSD_M, STREETS_MODEL, DreamOptions, DreamResult, dream,
                      dream_on_grid, town_on_grid, town_size_m, write_class_map)
from .structure import compare_structure, ks_distance, pooled, structure_stats
from .style import TOWN_STYLES, TownStyle, town_style
from .town import Town, dream_town, write_town_gpkg
from .stats import STREET_CLASSES, dream_tile_stats, line_stats, stitched_stats
from .stitch import (MAX_DREAM_PX, STREET_JOIN_CONE_DEG, STREET_JOIN_GAP_PX, STREET_MIN_LENGTH_PX, THIN_GROUPS,
                     StitchSettings, calibrate_dream_model, calibrate_thin_gains, dream_map, remove_specks, tile_latents)
from .train import STATE_STEM, DreamTrainSettings, recalibrate_batchnorm, train_dream, train_dream_with

__all__ = ["DEFAULT_MODEL_NAME", "DREAM_CLASSES", "DREAM_FORMAT", "DREAM_TOWN", "STREETS_GSD_M", "STREETS_MODEL",
           "TOWN_STYLES", "Town", "TownStyle", "compare_structure", "dream_town", "ks_distance", "pooled",
           "structure_stats", "town_on_grid", "town_size_m", "town_style", "write_town_gpkg", "FAKE_MODES", "MAX_DREAM_PX", "OSM_ATTRIBUTION",
           "OSM_LICENSE", "STATE_STEM", "STREET_CLASSES", "STREET_JOIN_CONE_DEG", "STREET_JOIN_GAP_PX",
           "STREET_MIN_LENGTH_PX", "THIN_GROUPS", "DreamModel", "DreamOptions", "DreamResult", "StitchSettings", "DreamTrainSettings",
           "calibrate_dream_model", "calibrate_thin_gains", "class_marginal_loss", "class_tiles_from_osm", "dream",
           "dream_map", "dream_on_grid", "dream_tile_stats", "line_stats", "load_dream_model", "mode_seeking_loss",
           "palette_rgb", "recalibrate_batchnorm", "remove_specks", "resolve_dream_model", "sample_tiles",
           "save_dream_model", "stitched_stats", "tile_latents", "train_dream", "train_dream_with", "write_class_map"]
