"""The hidden world of a survey demo: a Europe-like map, its smooth fields, regions and countries.

The map is a grid over :data:`~.spec.EUROPE_BOUNDS`. Land is a union of ellipses shaped like
Europe's peninsulas and islands minus its seas, with noisy coasts; mountain ranges sit where
Europe's are. The hidden fields (elevation, temperature, precipitation, continentality,
summer drought, soil, human pressure) are built as the 2022 demo's (smooth random fields,
:func:`geolifeclef.demo.world.smooth_noise`) around Europe's gradients: colder north and up,
drier south and east. The biogeographic regions are zones of those fields and the countries
a partition of the land around their seats; both are written in the metadata as the real
``region`` and ``country`` columns.
"""

import math
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from scipy import ndimage

from geolifeclef.data.rasters import pixel_indices
from geolifeclef.demo.surveys.spec import EUROPE_BOUNDS, SurveyDemoSpec
from geolifeclef.demo.world import smooth_noise

BIOGEOGRAPHIC_REGIONS = (
    "ALPINE",
    "ATLANTIC",
    "BLACK SEA",
    "BOREAL",
    "CONTINENTAL",
    "MEDITERRANEAN",
    "PANNONIAN",
    "STEPPIC",
)
"""The ``region`` values of the real metadata (GLC24-25-FORMAT §4)."""

_COUNTRY_SEATS = (
    # (name as the real metadata spells it, lon, lat); a country may have several seats
    ("Portugal", -8.2, 39.6),
    ("Spain", -3.7, 40.2),
    ("France", 2.4, 46.6),
    ("Belgium", 4.6, 50.6),
    ("Netherlands", 5.6, 52.3),
    ("Germany", 10.3, 51.2),
    ("Denmark", 9.4, 56.0),
    ("Switzerland", 8.2, 46.8),
    ("Austria", 14.3, 47.6),
    ("Italy", 12.6, 42.8),
    ("Slovenia", 14.8, 46.1),
    ("Croatia", 16.0, 45.4),
    ("Bosnia and Herzegovina", 17.8, 44.2),
    ("Serbia", 20.8, 44.0),
    ("Montenegro", 19.3, 42.8),
    ("Albania", 20.0, 41.1),
    ("The former Yugoslav Republic of Macedonia", 21.7, 41.6),
    ("Greece", 22.0, 39.3),
    ("Bulgaria", 25.3, 42.7),
    ("Romania", 25.0, 45.9),
    ("Moldova", 28.6, 47.2),
    ("Ukraine", 31.0, 49.0),
    ("Belarus", 28.0, 53.5),
    ("Poland", 19.4, 52.1),
    ("Czech Republic", 15.5, 49.8),
    ("Slovakia", 19.5, 48.7),
    ("Hungary", 19.2, 47.2),
    ("Lithuania", 23.9, 55.3),
    ("Latvia", 24.6, 56.9),
    ("Estonia", 25.5, 58.7),
    ("Finland", 26.0, 63.5),
    ("Sweden", 15.5, 60.5),
    ("Sweden", 20.0, 66.0),
    ("Norway", 9.0, 61.0),
    ("Norway", 17.0, 69.0),
    ("United Kingdom", -2.2, 53.6),
    ("Ireland", -8.0, 53.2),
)
COUNTRIES = tuple(sorted({name for name, _, _ in _COUNTRY_SEATS}))
"""The ``country`` values the demo writes, in index order of ``EuropeGrid.country``."""

# Ellipses (centre lon, lat; semi-axes in degrees of lon and lat; rotation in degrees,
# counter-clockwise): land is their union minus the seas.
_LAND = (
    (15.0, 51.5, 12.5, 4.8, 0),  # the central plain
    (2.5, 46.5, 5.5, 4.2, 0),  # France
    (-1.5, 48.2, 3.0, 1.2, 0),  # Brittany, Normandy
    (-3.8, 40.2, 5.8, 3.8, 0),  # Iberia
    (12.6, 42.6, 1.4, 5.3, 40),  # Italy
    (14.0, 37.5, 1.2, 0.5, 0),  # Sicily
    (9.0, 41.0, 0.6, 1.8, 0),  # Corsica, Sardinia
    (20.5, 43.0, 4.5, 3.0, 0),  # Balkans
    (22.5, 39.0, 1.8, 2.2, 0),  # Greece
    (26.5, 42.5, 3.0, 2.0, 0),  # Thrace
    (27.0, 49.5, 6.0, 5.5, 0),  # the east
    (24.5, 57.5, 4.0, 2.5, 0),  # Baltic states
    (18.0, 63.0, 3.8, 8.5, -39),  # Scandinavia
    (8.0, 60.5, 2.5, 2.5, 0),  # western Norway
    (26.5, 63.5, 3.5, 5.0, 0),  # Finland
    (9.5, 56.0, 1.2, 1.3, 0),  # Denmark
    (-2.8, 54.6, 1.9, 4.4, 25),  # Great Britain
    (-8.0, 53.3, 2.0, 2.1, 0),  # Ireland
)
_SEAS = (
    (19.2, 57.8, 2.3, 2.8, 0),  # Baltic
    (20.5, 63.0, 1.6, 3.2, -30),  # Gulf of Bothnia
    (25.5, 59.8, 3.0, 0.5, 0),  # Gulf of Finland
    (3.0, 56.5, 3.3, 3.2, 0),  # North Sea
    (34.0, 43.3, 6.0, 2.3, 0),  # Black Sea
    (15.5, 43.2, 0.9, 3.2, 40),  # Adriatic
    (-4.5, 45.8, 3.2, 1.8, 0),  # Bay of Biscay
    (-1.5, 50.0, 4.0, 0.5, 0),  # English Channel
    (25.0, 38.5, 1.5, 2.2, 0),  # Aegean
)
_MOUNTAINS = (
    # (ellipse as above, height in metres)
    (10.0, 46.4, 4.2, 0.9, 10, 2200),  # Alps
    (0.5, 42.7, 2.6, 0.4, 0, 1800),  # Pyrenees
    (23.0, 48.3, 3.0, 0.7, -35, 1200),  # northern Carpathians
    (25.5, 45.5, 2.5, 0.6, 0, 1300),  # southern Carpathians
    (14.0, 64.0, 1.2, 7.5, -39, 1300),  # Scandinavian mountains
    (13.2, 42.8, 0.6, 4.5, 40, 1100),  # Apennines
    (18.0, 43.8, 0.8, 3.5, 45, 1200),  # Dinarides
    (24.5, 42.6, 2.5, 0.5, 0, 1100),  # Balkan mountains
    (23.5, 42.0, 0.6, 0.5, 0, 1600),  # Rila
    (-3.5, 40.5, 3.5, 2.5, 0, 600),  # Iberian plateau
    (3.0, 45.3, 1.2, 1.0, 0, 900),  # Massif Central
    (-4.5, 57.0, 1.3, 0.8, 30, 700),  # Scottish highlands
)
_BLACK_SEA = _SEAS[4]
_PANNONIAN_BASIN = (19.8, 47.0, 2.8, 1.5, 0)

LAEA_EUROPE = CRS.from_wkt(
    'PROJCS["unknown",GEOGCS["unknown",DATUM["Unknown_based_on_GRS80_ellipsoid",'
    'SPHEROID["GRS 1980",6378137,298.257222101004,AUTHORITY["EPSG","7019"]]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]]],'
    'PROJECTION["Lambert_Azimuthal_Equal_Area"],PARAMETER["latitude_of_center",52],'
    'PARAMETER["longitude_of_center",10],PARAMETER["false_easting",4321000],'
    'PARAMETER["false_northing",3210000],UNIT["metre",1],AXIS["Easting",EAST],'
    'AXIS["Northing",NORTH]]'
)
"""LAEA Europe as the real GLC 2025 patches store it: EPSG:3035's parameters, no code."""


def to_laea(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Easting and northing in metres in :data:`LAEA_EUROPE` (the 10 km blocks, the patches)."""
    if not len(lon):
        return np.empty(0), np.empty(0)
    x, y = warp_transform(CRS.from_epsg(4326), LAEA_EUROPE, np.asarray(lon), np.asarray(lat))
    return np.asarray(x), np.asarray(y)


@dataclass
class EuropeGrid:
    """The hidden world on a lon/lat grid."""

    transform: rasterio.Affine
    land: np.ndarray
    fields: dict[str, np.ndarray]
    """Hidden fields: elevation (m), temperature (mean, deg C), precipitation (mm a year),
    continentality (0-1.5), seasonality_p (summer drought, 0-1), soil_clay (%), soil_ph
    (pH x 10), soil_organic, human (human pressure, 0-1)."""
    region: np.ndarray
    """Index in :data:`BIOGEOGRAPHIC_REGIONS` of each pixel, -1 at sea."""
    country: np.ndarray
    """Index in :data:`COUNTRIES` of each pixel, -1 at sea."""

    def pixels(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, col, inside) of the pixels holding the points."""
        return pixel_indices(self.transform, lon, lat, *self.land.shape)

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude of pixel centres."""
        lon, lat = self.transform * (cols + 0.5, rows + 0.5)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

    def at(self, lon: np.ndarray, lat: np.ndarray) -> dict[str, np.ndarray]:
        """The hidden fields at the points' pixels."""
        rows, cols, _ = self.pixels(lon, lat)
        return {name: field[rows, cols] for name, field in self.fields.items()}


def _ellipse(lon, lat, centre_lon, centre_lat, a, b, angle) -> np.ndarray:
    """Squared normalised radius of each point in a rotated ellipse (< 1 inside)."""
    theta = math.radians(angle)
    dx, dy = lon - centre_lon, lat - centre_lat
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2


def make_europe_grid(spec: SurveyDemoSpec, rng: np.random.Generator) -> EuropeGrid:
    """Draw the land, the hidden fields, the regions and the countries of the map."""
    west, south, east, north = EUROPE_BOUNDS
    res = spec.grid_resolution
    width, height = int(round((east - west) / res)), int(round((north - south) / res))
    transform = from_origin(west, north, res, res)
    rows, cols = np.mgrid[0:height, 0:width]
    lon = west + (cols + 0.5) * res
    lat = north - (rows + 0.5) * res
    scale = 1.0 / res  # pixels per degree
    shape = (height, width)

    coast = smooth_noise(rng, shape, 0.4 * scale)
    landness = np.max([1 - _ellipse(lon, lat, *e) for e in _LAND], axis=0) + 0.12 * coast
    seaness = np.min([_ellipse(lon, lat, *e) for e in _SEAS], axis=0) + 0.1 * coast
    land = (landness > 0) & (seaness > 1)
    land = ndimage.binary_opening(land, iterations=1) | (land & (landness > 0.3))
    # Degrees from the nearest sea pixel (lon scaled to distance), for coastal climates.
    coast_distance = ndimage.distance_transform_edt(land) * res

    relief = np.clip(smooth_noise(rng, shape, 1.2 * scale), 0, None)
    ridges = np.clip(smooth_noise(rng, shape, 0.4 * scale) - 1.0, 0, None)
    roughness = smooth_noise(rng, shape, 0.3 * scale)
    ranges = np.sum(
        [height_m * np.exp(-_ellipse(lon, lat, *e)) for *e, height_m in _MOUNTAINS], axis=0
    )
    elevation = 60 + 180 * relief + 500 * ridges + ranges * (0.85 + 0.25 * roughness)
    elevation = np.clip(elevation, 0, None)

    continentality = np.clip(
        0.2
        + 0.9 * (lon - west) / (east - west)
        + 0.1 * (lat - 50) / 10
        + 0.12 * smooth_noise(rng, shape, 3 * scale)
        - 0.35 * np.exp(-coast_distance / 1.5),
        0,
        1.5,
    )
    temperature = (
        18.0
        - 0.6 * (lat - 37)
        - 0.0065 * elevation
        - 1.5 * (continentality - 0.5)
        + 0.8 * smooth_noise(rng, shape, 2 * scale)
    )
    precipitation = np.clip(
        1250
        - 600 * continentality
        + 0.6 * elevation
        - 30 * np.clip(46 - lat, 0, None)
        + 300 * np.exp(-coast_distance / 1.5)
        + 200 * smooth_noise(rng, shape, 1.5 * scale),
        250,
        3000,
    )
    seasonality = np.clip(
        0.35 + 0.06 * (44 - lat) + 0.15 * smooth_noise(rng, shape, 2 * scale), 0, 1
    )
    human = 0.15 + 0.1 * smooth_noise(rng, shape, 0.5 * scale)
    land_rows, land_cols = np.nonzero(land)
    cities = rng.choice(len(land_rows), 60, replace=False)
    city_lon = lon[land_rows[cities], land_cols[cities]]
    city_lat = lat[land_rows[cities], land_cols[cities]]
    city_weight, city_size = rng.uniform(0.3, 0.9, 60), rng.uniform(0.15, 0.5, 60)
    for c in range(60):
        d2 = ((lon - city_lon[c]) * math.cos(math.radians(city_lat[c]))) ** 2 + (
            lat - city_lat[c]
        ) ** 2
        human += city_weight[c] * np.exp(-0.5 * d2 / city_size[c] ** 2)
    fields = {
        "elevation": elevation,
        "temperature": temperature,
        "precipitation": precipitation,
        "continentality": continentality,
        "seasonality_p": seasonality,
        "soil_clay": np.clip(25 + 10 * smooth_noise(rng, shape, 0.7 * scale), 2, 60),
        "soil_ph": np.clip(
            65 + 10 * smooth_noise(rng, shape, 1.0 * scale) - 0.01 * precipitation, 40, 85
        ),
        "soil_organic": np.clip(
            20
            + 15 * smooth_noise(rng, shape, 0.5 * scale)
            + 0.01 * elevation
            + 2.0 * np.clip(lat - 55, 0, None),
            0,
            200,
        ),
        "human": np.clip(human, 0, 1),
    }
    region = _regions(lon, lat, land, fields)
    country = _countries(lon, lat, land)
    return EuropeGrid(transform, land, fields, region, country)


def _regions(lon, lat, land, fields) -> np.ndarray:
    """Biogeographic zones from the fields, the later rules taking precedence."""
    index = {name: i for i, name in enumerate(BIOGEOGRAPHIC_REGIONS)}
    region = np.full(land.shape, index["CONTINENTAL"], dtype=np.int8)
    rules = (
        ("ATLANTIC", (fields["continentality"] < 0.5) & (lat >= 43) & (lat < 59.5)),
        ("BOREAL", (lat >= 59.5) | ((lat >= 57) & (lon >= 21))),
        (
            "MEDITERRANEAN",
            ((lat < 44.5) & (fields["seasonality_p"] > 0.45)) | (fields["temperature"] > 14.5),
        ),
        ("PANNONIAN", (_ellipse(lon, lat, *_PANNONIAN_BASIN) < 1) & (fields["elevation"] < 500)),
        ("STEPPIC", (lon >= 28) & (lat >= 45.5) & (lat <= 49.5)),
        ("BLACK SEA", (_ellipse(lon, lat, *_BLACK_SEA) < 1.9) & (lon > 26)),
        ("ALPINE", (fields["elevation"] > 1300) | ((fields["elevation"] > 700) & (lat > 61))),
    )
    for name, zone in rules:
        region[zone] = index[name]
    region[~land] = -1
    return region


def _countries(lon, lat, land) -> np.ndarray:
    """Each land pixel's nearest country seat (distances on the sphere, roughly)."""
    best = np.full(land.shape, np.inf)
    country = np.full(land.shape, -1, dtype=np.int16)
    coslat = np.cos(np.radians(lat))
    for name, seat_lon, seat_lat in _COUNTRY_SEATS:
        d2 = ((lon - seat_lon) * coslat) ** 2 + (lat - seat_lat) ** 2
        closer = d2 < best
        best[closer] = d2[closer]
        country[closer] = COUNTRIES.index(name)
    country[~land] = -1
    return country
