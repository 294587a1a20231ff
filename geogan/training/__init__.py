"""Training: datasets (side-by-side pairs, georeferenced chips), the D:G ratio controller, the trainer.

- :mod:`geogan.training.datasets`: ``PairsDataset``, ``ChipsDataset``, ``split_by_number``, class-balanced
  sampling (``tile_weights``, ``PairsDataset.sampler``);
- :mod:`geogan.training.pairs`: label maps (``load_label_map``) and the in-memory ``PairSet``;
- :mod:`geogan.training.chips`: ``make_chips`` (orthophoto + class source [+ DEM] -> aligned chips);
- :mod:`geogan.training.ratio`: ``DynamicRatio`` / ``FixedRatio``;
- :mod:`geogan.training.trainer`: ``train(arch, data, out_dir, ...)``, ``Trainer``, ``recipe_for``;
- :mod:`geogan.training.commands`: the ``geogan train`` and ``geogan chips`` commands.

Submodules are imported on use (torch and rasterio are heavy).
"""
