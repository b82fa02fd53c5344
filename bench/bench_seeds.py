"""Quality over several demo worlds: every model of the small demo, on a list of seeds.

    .venv/bin/python bench/bench_seeds.py /tmp/glc-seeds [--seeds 101 102 103 104 105 2022]

One demo world per seed (config/config.yaml with ``demo.seed`` set), each run by the
workflow through ``evaluate`` in a folder of its own under the folder given, one after the
other (~10 min a seed on 2 cores; ~150 MB a seed: delete the folder after). Beside the
config's models, each world gets the blends whose weights this bench compares, on the
config's fitted blend's members:

- ``equal_weights``: a fixed blend, every member 1;
- the fitted blends of ``BLEND_FITS``: by coordinate ascent on the val top-30 error
  (``top30``) or by the likelihood of val's labels (EM), falling back to the best member
  when the cross-fitted blend is worse or not (``_alone``), shrunk or not;

beside the config's own ``fitted_blend`` (the default fit). Every fitted blend is scored
cross-fitted, as the leaderboard scores it; ``fit_blend`` is rerun each time (its code
may have changed, its inputs not). Writes ``seeds.csv`` (a row per seed and
model: val top-30 error, expected val top-30 error under the world's true probabilities,
gap closed in expected error) and ``seeds.md`` (per model, the mean and spread over the
seeds, and each seed's expected error) in the folder given; a seed already evaluated is
read, not rerun.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "config.yaml"
SEEDS = [101, 102, 103, 104, 105, 2022]
BLEND_FITS = {
    "fitted_top30_alone": {"method": "top30", "fallback": False},
    "fitted_likelihood_alone": {"method": "likelihood", "fallback": False},
    "fitted_top30": {"method": "top30"},
    "fitted_likelihood_shrunk": {"method": "likelihood", "shrink": 0.5},
}
"""Fitted blends beside the config's own ``fitted_blend`` (the default fit: likelihood,
falling back to the best member): ``_alone`` ones never fall back (``top30_alone`` is the
fit before the likelihood)."""


def world_config(config: dict, seed: int) -> dict:
    """The config of one world: the demo seed, and the blends this bench compares."""
    members = config["fitted_blends"]["fitted_blend"]["models"]
    world = {**config, "demo": {**config["demo"], "seed": seed}}
    world["blends"] = {**config["blends"], "equal_weights": dict.fromkeys(members, 1.0)}
    world["fitted_blends"] = {**config["fitted_blends"]}
    for name, fit in BLEND_FITS.items():
        world["fitted_blends"][name] = {"models": members, **fit}
    return world


def world_models(config: dict) -> set[str]:
    """The models of a world's config (a folder may hold results of models since dropped)."""
    names = {"constant", "knn", "random_forest", *config["experiments"], *config["blends"]}
    return names | set(config["fitted_blends"])


def evaluate_world(folder: Path, config: dict, cores: int, *more: str) -> None:
    """Run the workflow's ``evaluate`` target on one world (nothing when it is done);
    ``more``: further arguments of snakemake."""
    folder.mkdir(parents=True, exist_ok=True)
    configfile = folder / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake = Path(sys.executable).with_name("snakemake")
    subprocess.run(
        [str(snakemake), "evaluate", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(folder), "--configfile", str(configfile), "--cores", str(cores),
         "--quiet", "rules", *more],
        check=True,
    )  # fmt: skip


def world_scores(folder: Path, seed: int, models: set[str]) -> pd.DataFrame:
    """A row per model of ``models``: its val and expected errors."""
    rows = []
    for model in sorted(models):
        metrics = json.loads(
            (folder / "results" / "evaluation" / model / "metrics.json").read_text()
        )
        rows.append(
            {
                "seed": seed,
                "model": metrics["model"],
                "kind": metrics["kind"],
                "val_top30_error": metrics["top30_error"],
                "expected_val_top30_error": metrics["expected_top30_error"]["model"],
                "bayes_expected": metrics["expected_top30_error"]["bayes"],
                "gap_closed_expected": metrics["gap_closed_expected"],
            }
        )
    return pd.DataFrame(rows)


def summary_table(frame: pd.DataFrame, members: list[str]) -> str:
    """Markdown: per model, mean and spread (sd, min-max) over the seeds, then each
    seed's expected error, the best of each seed in bold; and each blend's margin over
    the best of ``members`` (the blends' members), seed by seed."""
    seeds = sorted(frame["seed"].unique())
    expected = frame.pivot(index="model", columns="seed", values="expected_val_top30_error")
    gap = frame.pivot(index="model", columns="seed", values="gap_closed_expected")
    val = frame.pivot(index="model", columns="seed", values="val_top30_error")
    order = expected.mean(axis=1).sort_values().index
    best = expected.idxmin()
    lines = [
        f"Expected val top-30 error over {len(seeds)} demo worlds (seeds "
        f"{', '.join(map(str, seeds))}); mean (sd) [min, max]; lower is better.",
        "",
        "| model | expected val error | gap closed (expected) | val top-30 error | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " |",
        "| --- | --- | --- | --- | " + " | ".join("---:" for _ in seeds) + " |",
    ]
    for model in order:
        e, g, v = expected.loc[model], gap.loc[model], val.loc[model]
        cells = [f"**{e[s]:.4f}**" if best[s] == model else f"{e[s]:.4f}" for s in seeds]
        lines.append(
            f"| {model} | {e.mean():.4f} ({e.std():.4f}) [{e.min():.4f}, {e.max():.4f}] "
            f"| {g.mean():.3f} ({g.std():.3f}) | {v.mean():.4f} ({v.std():.4f}) | "
            + " | ".join(cells)
            + " |"
        )
    best_member = expected.loc[members].min()
    blends = frame.loc[frame["kind"].isin(["blend", "fitted blend"]), "model"].unique()
    blends = [m for m in order if m in blends]
    lines += [
        "",
        "Each blend minus its best member in expected val error, seed by seed (< 0: the "
        "blend is better):",
        "",
        "| blend | " + " | ".join(f"seed {s}" for s in seeds) + " | worse on |",
        "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: |",
    ]
    for blend in blends:
        margin = expected.loc[blend] - best_member
        lines.append(
            f"| {blend} | "
            + " | ".join(f"{margin[s]:+.4f}" for s in seeds)
            + f" | {int((margin > 0).sum())} of {len(seeds)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a folder outside the repository")
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    out = args.out.resolve()
    config = yaml.safe_load(CONFIG.read_text())
    frames = []
    for seed in args.seeds:
        folder = out / f"seed-{seed}"
        world = world_config(config, seed)
        evaluate_world(folder, world, args.cores, "--forcerun", "fit_blend")
        frames.append(world_scores(folder, seed, world_models(world)))
        print(f"seed {seed}: evaluated", flush=True)
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(out / "seeds.csv", index=False)
    table = summary_table(frame, config["fitted_blends"]["fitted_blend"]["models"])
    (out / "seeds.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
