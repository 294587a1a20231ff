"""A local east-north-up (ENU) frame on the WGS84 ellipsoid, and its exact link to any CRS and to ECEF.

3-D viewers place a model in a local tangent frame at an origin; this module converts between a
render's CRS and that frame with PROJ (``+proj=cart`` + ``+proj=topocentric``), so a point known in
lon/lat lands where it belongs, whatever the CRS's grid convergence or scale factor.

Heights: the frame's origin lies on the ellipsoid (height 0) under ``origin_lonlat``; a vertex's height
value (e.g. from a DEM) is used as an ellipsoidal height. A DEM's own vertical datum (e.g. a geoid) is
therefore not converted: the offset between geoid and ellipsoid (tens of metres) shifts the whole
model up or down but not sideways; it is recorded in the outputs' metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyproj


@dataclass(frozen=True)
class EnuFrame:
    """East-north-up metres at ``origin_lonlat`` (degrees), origin on the WGS84 ellipsoid."""

    lon_deg: float
    lat_deg: float

    @cached_property
    def _lonlat_to_enu(self) -> pyproj.Transformer:
        return pyproj.Transformer.from_pipeline(
            "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step +proj=cart +ellps=WGS84 "
            f"+step +proj=topocentric +ellps=WGS84 +lon_0={self.lon_deg!r} +lat_0={self.lat_deg!r} +h_0=0")

    def from_lonlat(self, lon, lat, h) -> np.ndarray:
        """(N, 3) ENU metres of lon/lat (degrees) and ellipsoidal height h (metres)."""
        e, n, u = self._lonlat_to_enu.transform(np.asarray(lon, float), np.asarray(lat, float), np.asarray(h, float))
        return np.column_stack([e, n, u])

    def to_lonlat(self, enu: np.ndarray) -> np.ndarray:
        """(N, 3) lon, lat (degrees) and ellipsoidal height of ENU points (the inverse of :meth:`from_lonlat`)."""
        enu = np.asarray(enu, float).reshape(-1, 3)
        lon, lat, h = self._lonlat_to_enu.transform(enu[:, 0], enu[:, 1], enu[:, 2], direction="INVERSE")
        return np.column_stack([lon, lat, h])

    def from_crs(self, crs: pyproj.CRS, x, y, h) -> np.ndarray:
        """(N, 3) ENU metres of points in ``crs`` (horizontal) with heights ``h`` in metres."""
        lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
            np.asarray(x, float), np.asarray(y, float))
        return self.from_lonlat(lon, lat, h)

    def to_crs(self, crs: pyproj.CRS, enu: np.ndarray) -> np.ndarray:
        """(N, 3) x, y in ``crs`` and height of ENU points."""
        llh = self.to_lonlat(enu)
        x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(llh[:, 0], llh[:, 1])
        return np.column_stack([x, y, llh[:, 2]])

    def enu_to_ecef(self) -> np.ndarray:
        """4x4 matrix taking ENU metres (column vectors, homogeneous) to ECEF (EPSG:4978) metres."""
        lam, phi = np.radians(self.lon_deg), np.radians(self.lat_deg)
        sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
        rot = np.array([[-sl, -sp * cl, cp * cl],
                        [cl, -sp * sl, cp * sl],
                        [0.0, cp, sp]])
        x0, y0, z0 = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(
            self.lon_deg, self.lat_deg, 0.0)
        m = np.eye(4)
        m[:3, :3] = rot
        m[:3, 3] = (x0, y0, z0)
        return m


#: glTF is y-up: glTF (X, Y, Z) = (east, up, -north). ``GLTF_FROM_ENU @ [e, n, u, 1]`` gives glTF coordinates.
GLTF_FROM_ENU = np.array([[1.0, 0.0, 0.0, 0.0],
                          [0.0, 0.0, 1.0, 0.0],
                          [0.0, -1.0, 0.0, 0.0],
                          [0.0, 0.0, 0.0, 1.0]])


def gltf_to_ecef(frame: EnuFrame) -> np.ndarray:
    """4x4 matrix from glTF scene coordinates (y-up ENU) to ECEF metres: a root node transform for Cesium."""
    return frame.enu_to_ecef() @ np.linalg.inv(GLTF_FROM_ENU)


__all__ = ["EnuFrame", "GLTF_FROM_ENU", "gltf_to_ecef"]
