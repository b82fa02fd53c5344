"""Locations as 3D unit vectors: what the models read of a point, and where the presence-only
points find their nearest survey (a chord is a great-circle distance, monotonically)."""

import numpy as np


def unit_sphere(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """Coordinates as a 3D unit vector: no seam at +-180 degrees, distances preserved."""
    lat, lon = np.radians(latitude), np.radians(longitude)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
