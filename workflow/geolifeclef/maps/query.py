"""Point queries: which species to expect at a spot, from any model that can be mapped.

Run from the workflow's folder, after ``snakemake maps`` (or just the model's description,
``snakemake results/maps/MODEL/model.json``)::

    geolifeclef query --model env_mlp --lat 43.61 --lon 3.88
    geolifeclef query --model random_forest --points my_points.csv --output top30.csv

It prints the top-30 species with their names and probabilities. The 27 environmental
values are read from the rasters at the point exactly as for an observation (the pixel
holding it), and the model predicts through the same code as its maps
(``geolifeclef.maps.point_models``), so the answer at an observation's coordinates is that
observation's prediction. A point that is not a number, out of range, outside both regions'
rasters or where no raster has a value (the sea) is refused with the reason; a model that
reads patches says why it cannot answer. Where the region's MESS map exists (``snakemake
maps``), the answer says whether the point lies outside the training conditions
(``geolifeclef.maps.mess``).
"""

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.atomic import atomic_path
from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.env_table import extract_environment
from geolifeclef.data.observations import read_species_names
from geolifeclef.data.rasters import region_of_points
from geolifeclef.errors import InputDataError
from geolifeclef.layout import ENV_VARIABLES, REGIONS, DatasetLayout
from geolifeclef.maps.mess import mess_at, mess_path
from geolifeclef.maps.point_models import PointModel, PointModelSpec, read_spec
from geolifeclef.maps.render import region_bounds
from geolifeclef.maps.trained_models import load_point_model
from geolifeclef.predictions.metrics import KAGGLE_K, top_k
from geolifeclef.settings.maps import MapSettings

DEFAULT_MAPS_DIR = Path("results/maps")
REGION_NAMES = {"fr": "France", "us": "the US"}


@dataclass(frozen=True)
class PointAnswer:
    """The best species at one point, best first."""

    latitude: float
    longitude: float
    region: str
    species_ids: np.ndarray
    probabilities: np.ndarray
    missing_env: int
    """Environmental variables without a value here (filled as for an observation)."""


def check_points(
    layout: DatasetLayout, latitude: np.ndarray, longitude: np.ndarray
) -> tuple[np.ndarray, list[str | None]]:
    """The env values (n, 27) of the points and, per point, why it is refused (None: fine).

    Refused: coordinates that are not finite numbers or out of range, points outside the
    extent of their region's rasters (outside both regions), and points where no raster
    has a value (the sea).
    """
    latitude = np.asarray(latitude, dtype=np.float64)
    longitude = np.asarray(longitude, dtype=np.float64)
    problems: list[str | None] = [None] * len(latitude)
    for i, (lat, lon) in enumerate(zip(latitude, longitude, strict=True)):
        if not (math.isfinite(lat) and math.isfinite(lon)):
            problems[i] = f"latitude {lat} / longitude {lon} is not a number"
        elif not (-90 <= lat <= 90 and -180 <= lon <= 180):
            problems[i] = (
                f"latitude {lat} / longitude {lon} is out of range "
                "(latitude -90..90, longitude -180..180; swapped?)"
            )
    bounds = {region: region_bounds(layout, region) for region in REGIONS}
    regions = region_of_points(np.nan_to_num(longitude))
    for i, region in enumerate(regions):
        west, south, east, north = bounds[region]
        if problems[i] is None and not (
            west <= longitude[i] <= east and south <= latitude[i] <= north
        ):
            covered = "; ".join(
                f"{REGION_NAMES[r]}: longitude {w:g}..{e:g}, latitude {s:g}..{n:g}"
                for r, (w, s, e, n) in bounds.items()
            )
            problems[i] = f"outside both regions ({covered})"
    env = np.full((len(latitude), len(ENV_VARIABLES)), np.nan, dtype=np.float32)
    usable = np.flatnonzero([p is None for p in problems])
    if len(usable):
        env[usable], _ = extract_environment(
            layout, longitude[usable], latitude[usable], progress=False
        )
    for i in usable:
        if np.isnan(env[i]).all():
            problems[i] = (
                f"no raster has a value at latitude {latitude[i]}, longitude {longitude[i]} "
                f"({REGION_NAMES[regions[i]]}): the sea, or a gap in the rasters"
            )
    return env, problems


def query_points(
    model: PointModel,
    layout: DatasetLayout,
    species_ids: np.ndarray,
    latitude: np.ndarray,
    longitude: np.ndarray,
    top: int = KAGGLE_K,
    chunk_rows: int | None = None,
) -> list[PointAnswer | str]:
    """The ``top`` species of ``model`` at each point, or why the point is refused.

    The points are predicted ``chunk_rows`` at a time (default: as many as a map's chunk,
    ``MapSettings.chunk_mb`` of probabilities), so memory stays bounded whatever their
    number (100,000 points at once would be 13.6 GB of float64 at 17,037 species).
    """
    latitude = np.asarray(latitude, dtype=np.float64)
    longitude = np.asarray(longitude, dtype=np.float64)
    if chunk_rows is None:
        chunk_rows = MapSettings().chunk_cells(len(species_ids))
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    env, problems = check_points(layout, latitude, longitude)
    good = np.flatnonzero([p is None for p in problems])
    answers: list[PointAnswer | str] = [p for p in problems]  # type: ignore[misc]
    regions = region_of_points(longitude[good])
    for start in range(0, len(good), chunk_rows):
        rows = good[start : start + chunk_rows]
        p = model.probabilities(latitude[rows], longitude[rows], env[rows])
        ids, scores = top_k(p, min(top, p.shape[1]), species_ids)
        for j, i in enumerate(rows):
            answers[i] = PointAnswer(
                float(latitude[i]),
                float(longitude[i]),
                str(regions[start + j]),
                ids[j],
                scores[j],
                int(np.isnan(env[i]).sum()),
            )
    return answers


def read_points(path: str | Path) -> pd.DataFrame:
    """A CSV of points: ``latitude`` and ``longitude`` columns (',' or ';' separated), any
    other columns kept as labels; ``line`` is each row's line in the file."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(path, "file is missing", "give the path of a CSV of points")
    frame = pd.read_csv(path, sep=None, engine="python", encoding="utf-8-sig")
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("latitude", "longitude") if c not in frame.columns]
    if missing:
        raise InputDataError(
            path,
            f"no {' and '.join(missing)} column (columns: {list(frame.columns)})",
            "write a header line with latitude and longitude (decimal degrees, WGS84)",
            line=1,
        )
    for column in ("latitude", "longitude"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["line"] = np.arange(len(frame)) + 2
    return frame


def format_answer(
    model: str, answer: PointAnswer, names: dict[int, str], mess: float | None = None
) -> str:
    """The answer as text; ``mess`` (the region's MESS at the point's map cell) adds whether
    the point lies outside the training conditions."""
    lines = [
        f"{model} at latitude {answer.latitude:.5f}, longitude {answer.longitude:.5f} "
        f"({REGION_NAMES[answer.region]}; "
        f"{len(ENV_VARIABLES) - answer.missing_env} of {len(ENV_VARIABLES)} environmental "
        "values here)",
    ]
    if mess is not None and math.isfinite(mess):
        lines.append(
            f"outside the training conditions (MESS {mess:.1f} < 0: a variable lies beyond the "
            "range of the region's train observations): the model extrapolates here"
            if mess < 0
            else f"within the training conditions (MESS {mess:.1f} >= 0)"
        )
    lines.append(f"{'rank':>4}  {'species_id':>10}  {'probability':>11}  name")
    for rank, (species, p) in enumerate(
        zip(answer.species_ids, answer.probabilities, strict=True), start=1
    ):
        lines.append(f"{rank:>4}  {int(species):>10}  {p:>11.5f}  {names.get(int(species), '')}")
    return "\n".join(lines)


def answers_table(answers: list, labels: list[str], names: dict[int, str]) -> pd.DataFrame:
    """The answered points as one long table: point, coordinates, rank, species, name,
    probability."""
    pairs = zip(labels, answers, strict=True)
    kept = [(label, a) for label, a in pairs if isinstance(a, PointAnswer)]
    columns = ["point", "latitude", "longitude", "rank", "species_id", "name", "probability"]
    if not kept:
        return pd.DataFrame(columns=columns)
    sizes = np.array([len(a.species_ids) for _, a in kept])
    species = np.concatenate([a.species_ids for _, a in kept]).astype(np.int64)
    table = pd.DataFrame(
        {
            "point": np.repeat([label for label, _ in kept], sizes),
            "latitude": np.repeat([a.latitude for _, a in kept], sizes),
            "longitude": np.repeat([a.longitude for _, a in kept], sizes),
            "rank": np.concatenate([np.arange(1, n + 1) for n in sizes]),
            "species_id": species,
            "name": pd.Series(species).map(names).fillna("").to_numpy(),
            "probability": np.concatenate([a.probabilities for _, a in kept]).astype(float),
        }
    )
    return table[columns]


def mess_of(maps_dir: Path, answers: list) -> list[float | None]:
    """The region's MESS at each answered point (``snakemake maps`` writes results/mess/),
    each region's map read once; None for a refused point or where there is no MESS map."""
    values: list[float | None] = [None] * len(answers)
    answered = [i for i, a in enumerate(answers) if isinstance(a, PointAnswer)]
    for region in {answers[i].region for i in answered}:
        path = mess_path(maps_dir.parent, region)
        if not path.exists():
            continue
        mine = [i for i in answered if answers[i].region == region]
        latitude = np.array([answers[i].latitude for i in mine])
        longitude = np.array([answers[i].longitude for i in mine])
        for i, value in zip(mine, mess_at(path, latitude, longitude), strict=True):
            values[i] = float(value)
    return values


def load_spec(maps_dir: Path, model: str) -> PointModelSpec:
    path = maps_dir / model / "model.json"
    if not path.exists():
        known = sorted(p.parent.name for p in maps_dir.glob("*/model.json"))
        raise SystemExit(
            f"no description of model {model!r} at {path}. Build it from the workflow's "
            f"folder with: snakemake results/maps/{model}/model.json (or: snakemake maps)"
            + (f". Described models: {', '.join(known)}" if known else "")
        )
    return read_spec(path)


PRINTED_POINTS = 20
"""Points whose answers are printed when they are also written to ``--output``."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="geolifeclef query",
        description="Top species of a model at points of the two regions (run from the "
        "workflow's folder).",
    )
    parser.add_argument("--model", required=True, help="a mapped model, e.g. env_mlp, knn")
    parser.add_argument("--lat", type=float, help="latitude in decimal degrees (WGS84)")
    parser.add_argument("--lon", type=float, help="longitude in decimal degrees (WGS84)")
    parser.add_argument("--points", help="CSV with latitude and longitude columns")
    parser.add_argument("--top", type=int, default=KAGGLE_K, help="species per point (30)")
    parser.add_argument("--output", help="also write the answers to this CSV (long format)")
    parser.add_argument("--maps-dir", type=Path, default=DEFAULT_MAPS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (args.points is None) == (args.lat is None and args.lon is None):
        parser.error("give --lat and --lon, or --points CSV")
    if args.points is None and (args.lat is None or args.lon is None):
        parser.error("give both --lat and --lon")
    spec = load_spec(args.maps_dir, args.model)
    if not spec.mappable:
        print(f"{args.model} cannot answer point queries: {spec.reason}.", file=sys.stderr)
        return 2
    if args.points is not None:
        try:
            points = read_points(args.points)
        except InputDataError as error:
            print(error, file=sys.stderr)
            return 2
        labels = [f"line {line}" for line in points["line"]]
        latitude, longitude = points["latitude"].to_numpy(), points["longitude"].to_numpy()
    else:
        labels = ["point"]
        latitude, longitude = np.array([args.lat]), np.array([args.lon])

    layout = DatasetLayout(spec.data_root)
    model = load_point_model(spec)
    species_ids = read_species_table(spec.species_table)["species_id"].to_numpy()
    names = read_species_names(spec.species_details)
    answers = query_points(model, layout, species_ids, latitude, longitude, args.top)
    # Many points with a file to write: the answers go there, the screen gets a summary
    # (30 lines a point would take longer to print than to predict).
    printed = not args.output or len(answers) <= PRINTED_POINTS
    similarity = mess_of(args.maps_dir, answers) if printed else [None] * len(answers)
    refused = 0
    for label, answer, mess in zip(labels, answers, similarity, strict=True):
        if isinstance(answer, PointAnswer):
            if printed:
                print(format_answer(args.model, answer, names, mess), end="\n\n")
        else:
            refused += 1
            where = f"{args.points}, {label}" if args.points else "the point"
            print(f"{where}: refused: {answer}", file=sys.stderr)
    if args.output:
        with atomic_path(args.output) as temporary:
            answers_table(answers, labels, names).to_csv(temporary, index=False)
        print(f"{len(answers) - refused} points answered, {refused} refused: {args.output}")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
