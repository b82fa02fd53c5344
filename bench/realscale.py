"""Write the real-scale rasters and points of ``geolifeclef.demo.realscale`` (the
benchmarks' environment) under a folder: ``python bench/realscale.py /tmp/glc-bench``."""

import argparse
import time
from pathlib import Path

from geolifeclef.demo.realscale import N_POINTS, write_points, write_rasters

__all__ = ["N_POINTS", "write_points", "write_rasters"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", type=Path, help="where to write (under /tmp by default)")
    parser.add_argument("--points", type=int, default=N_POINTS)
    parser.add_argument("--tiled", action="store_true", help="256 x 256 tiles instead of strips")
    args = parser.parse_args()
    start = time.perf_counter()
    write_rasters(args.workdir / "glc22", tiled=args.tiled)
    write_points(args.workdir / "observations", args.points)
    print(f"written in {time.perf_counter() - start:.0f} s under {args.workdir}")


if __name__ == "__main__":
    main()
