"""Quality of a survey edition's demo over several worlds: every model, in expected F1.

    .venv/bin/python bench/bench_survey_seeds.py /tmp/glc-survey-seeds \
        [--edition glc2024] [--seeds 2024 11 12]

One demo world per seed (the edition's config with ``demo.seed`` set), each run by the
workflow through ``evaluate`` in a folder of its own under the folder given, one after the
other (~6 min a seed on 2 idle cores; ~1 GB a seed: delete the folder after). For each
world it reports, on val, under the world's true presence probabilities:

- every model's expected F1 and F1 (the set rule it chose), the best model and whether it
  beats every baseline (constant, region_prior, knn, random_forest);
- the share of the constant-to-Bayes gap the best model closes, in expected F1;
- for every model, the expected F1 of its expected-F1 sets against a fixed top 25 of the
  same probabilities (the organizers' K).

Writes ``seeds.csv`` (a row per seed and model) and ``seeds.md`` in the folder given; a
seed already evaluated is read, not rerun.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from bench_seeds import evaluate_world  # this folder's: the same way to run a world

from geolifeclef.editions import EDITIONS
from geolifeclef.evaluation.set_scores import gap_closed, load_presence_truth
from geolifeclef.predictions.f1 import expected_f1
from geolifeclef.predictions.set_rules import SetRule, apply_rule
from geolifeclef.predictions.table import read_predictions

REPO = Path(__file__).resolve().parents[1]
BASELINES = ("constant", "region_prior", "knn", "random_forest")
FIXED_K = 25


def fixed_against_expected(folder: Path, model: str, truth: Path) -> tuple[float, float]:
    """Expected val F1 of ``model``'s top-25 sets and of its expected-F1 sets, both cut from
    the same predicted probabilities."""
    predictions = read_predictions(
        folder / "results" / "predictions" / model / "val.parquet", marginal=True
    )
    probabilities, species_ids = load_presence_truth(truth, predictions.observation_id)
    found = []
    for rule in (SetRule("top_k", FIXED_K), SetRule("expected_f1")):
        sets, _ = apply_rule(rule, predictions.species_ids, predictions.scores)
        found.append(float(expected_f1(probabilities, sets, species_ids).mean()))
    return found[0], found[1]


def world_scores(folder: Path, seed: int, edition: str) -> pd.DataFrame:
    truth = folder / EDITIONS[edition].demo_truth / "presence_probabilities.npz"
    rows = []
    for metrics_file in sorted((folder / "results" / "evaluation").glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        model = metrics["model"]
        expected = metrics["expected_f1"]
        top25, expected_sets = fixed_against_expected(folder, model, truth)
        rows.append(
            {
                "seed": seed,
                "model": model,
                "kind": metrics["kind"],
                "set_rule": metrics["set_rule"]["name"],
                "val_f1": metrics["f1"],
                "expected_f1": expected["model"],
                "constant_expected_f1": expected["constant"],
                "bayes_expected_f1": expected["bayes"],
                "gap_closed": gap_closed(
                    expected["model"], expected["constant"], expected["bayes"]
                ),
                "top25_expected_f1": top25,
                "expected_f1_sets_expected_f1": expected_sets,
            }
        )
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> str:
    seeds = sorted(frame["seed"].unique())
    expected = frame.pivot(index="model", columns="seed", values="expected_f1")
    order = expected.mean(axis=1).sort_values(ascending=False).index
    lines = [
        f"Expected val F1 over {len(seeds)} demo worlds (seeds {', '.join(map(str, seeds))}); "
        "higher is better; the best of each seed in bold.",
        "",
        "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: |",
    ]
    best = expected.idxmax()
    for model in order:
        cells = [
            f"**{expected.loc[model, s]:.4f}**"
            if best[s] == model
            else f"{expected.loc[model, s]:.4f}"
            for s in seeds
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {expected.loc[model].mean():.4f} |")
    lines += [
        "",
        "Per seed: the best model, its margin over the best baseline, the share of the "
        "constant-to-Bayes gap it closes, and its expected F1 with expected-F1 sets against "
        f"a fixed top {FIXED_K} of the same probabilities:",
        "",
        "| seed | best model | margin over best baseline | constant | Bayes | gap closed | "
        f"top {FIXED_K} | expected-F1 sets |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for seed in seeds:
        world = frame[frame["seed"] == seed].set_index("model")
        top = world["expected_f1"].idxmax()
        margin = world.loc[top, "expected_f1"] - world.loc[list(BASELINES), "expected_f1"].max()
        row = world.loc[top]
        lines.append(
            f"| {seed} | {top} | {margin:+.4f} | {row['constant_expected_f1']:.4f} | "
            f"{row['bayes_expected_f1']:.4f} | {row['gap_closed']:.3f} | "
            f"{row['top25_expected_f1']:.4f} | {row['expected_f1_sets_expected_f1']:.4f} |"
        )
    beats = frame.assign(gain=frame["expected_f1_sets_expected_f1"] - frame["top25_expected_f1"])
    lines += [
        "",
        f"Expected-F1 sets minus a fixed top {FIXED_K}, every model and seed: min "
        f"{beats['gain'].min():+.4f}, mean {beats['gain'].mean():+.4f} "
        f"({int((beats['gain'] > 0).sum())} of {len(beats)} better).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--edition", default="glc2024", choices=["glc2024", "glc2025"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2024, 11, 12])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / EDITIONS[args.edition].config_file).read_text())
    frames = []
    for seed in args.seeds:
        folder = args.folder / f"{args.edition}-{seed}"
        world = {**config, "demo": {**config["demo"], "seed": seed}}
        evaluate_world(folder, world, args.cores)  # the edition's config replaces its file
        frames.append(world_scores(folder, seed, args.edition))
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(args.folder / "seeds.csv", index=False)
    text = summary(frame)
    (args.folder / "seeds.md").write_text(text)
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
