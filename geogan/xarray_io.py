"""Render results as an in-memory ``xarray.Dataset`` (rioxarray-aware), for notebooks."""

from __future__ import annotations

from .errors import InputError


def load_dataset(result):
    """``aerial`` (band, y, x) uint8, ``height`` (y, x) float32 m, ``classes`` (y, x) uint8, with CRS/transform."""
    try:
        import rioxarray
        import xarray as xr
    except ImportError:
        raise InputError("returning an xarray.Dataset needs xarray and rioxarray; pip install 'geogan[xarray]' "
                         "or pass out_dir") from None
    arrays = {}
    for name, path in result.paths.items():
        da = rioxarray.open_rasterio(path).load()
        if da.sizes["band"] == 1:
            da = da.squeeze("band", drop=True)
        arrays[name] = da
    ds = xr.Dataset(arrays)
    ds = ds.rio.write_crs(arrays["aerial"].rio.crs)
    ds.attrs.update(tiles=result.tiles, seconds=result.seconds, warnings="; ".join(result.warnings))
    return ds
