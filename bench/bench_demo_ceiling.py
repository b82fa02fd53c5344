"""How much of the demo's constant-to-Bayes gap its training data can close at all.

Draws a small demo (``n_train`` train observations), keeps the generator's hidden draws
(the niche fields, land-cover shares and coordinates of every site, and each site's true
species probabilities) and fits on the train labels a model of the generator's own form:
per species, a quadratic in each niche field, a quadratic in the coordinates, the log of
a land-cover affinity and a bias per region. No model of the workflow sees these hidden
fields (they see rasters and patches derived from them), so the share of the gap this
well-specified model closes on val and test is a rough ceiling for the workflow's models at
that training size. Writes ``results.json`` under ``out``.

    .venv/bin/python bench/bench_demo_ceiling.py /tmp/ceiling --n-train 15000 60000
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import geolifeclef.demo as demo
from geolifeclef.demo.spec import spec_for


def draw_demo(root: Path, seed: int, n_train: int) -> dict:
    """Generate a small demo under ``root`` and return the generator's hidden draws."""
    captured = {}
    draw_labels = demo.draw_labels

    def keep(species, sites, features, shares, spec, rng):
        labels = draw_labels(species, sites, features, shares, spec, rng)
        captured.update(species=species, sites=sites, features=features, shares=shares)
        captured["labels"] = labels[0]
        return labels

    demo.draw_labels = keep  # generate_demo_dataset looks the name up when it runs
    try:
        spec = spec_for("small", seed=seed, n_train=n_train, patch_size=64)
        demo.generate_demo_dataset(root / "glc22", root / "truth", spec, workers=2)
    finally:
        demo.draw_labels = draw_labels
    return captured


def expected_error(truth: np.ndarray, scores: np.ndarray, k: int = 30) -> float:
    """Mean over rows of the true probability mass outside the top ``k`` of ``scores``."""
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(1 - np.take_along_axis(truth, top, axis=1).sum(axis=1).mean())


class WellSpecified(torch.nn.Module):
    """logit = linear(fields, fields^2, coordinates, their squares) + log(shares . affinity
    x C + 1e-3) + bias[region]: the generator's form with every parameter learned."""

    def __init__(self, n_inputs: int, n_codes: int, n_species: int):
        super().__init__()
        self.linear = torch.nn.Linear(n_inputs, n_species)
        self.affinity = torch.nn.Parameter(torch.zeros(n_species, n_codes))
        self.region_bias = torch.nn.Parameter(torch.zeros(2, n_species))

    def forward(self, x, shares, region):
        affinity = torch.softmax(self.affinity, dim=1)
        landcover = torch.log(shares @ affinity.T * shares.shape[1] + 1e-3)
        return self.linear(x) + landcover + self.region_bias[region]


def ceiling(draws: dict, steps: int) -> dict:
    """Fit ``WellSpecified`` on the train sites; expected top-30 error and gap closed."""
    sites, fields, shares, labels = (draws[k] for k in ("sites", "features", "shares", "labels"))
    truth = draws["species"].probabilities(sites.region_index, fields, shares, sites.lonlat)
    rows = {split: np.flatnonzero(sites.split == split) for split in ("train", "val", "test")}
    centre, scale = sites.lonlat[rows["train"]].mean(0), sites.lonlat[rows["train"]].std(0)

    def inputs(split):
        r = rows[split]
        lonlat = (sites.lonlat[r] - centre) / scale
        quadratic = [fields[r] ** 2, lonlat**2, lonlat.prod(axis=1, keepdims=True)]
        x = np.concatenate([fields[r], lonlat, *quadratic], axis=1)
        return (
            torch.tensor(x, dtype=torch.float32),
            torch.tensor(shares[r], dtype=torch.float32),
            torch.tensor(sites.region_index[r]),
        )

    torch.manual_seed(0)
    train_inputs, target = inputs("train"), torch.tensor(labels[rows["train"]])
    model = WellSpecified(train_inputs[0].shape[1], shares.shape[1], truth.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):  # full batch: the demo's train set fits at once
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(*train_inputs), target)
        loss.backward()
        optimizer.step()
    frequencies = np.bincount(labels[rows["train"]], minlength=truth.shape[1]).astype(float)
    result = {"n_train": len(rows["train"]), "train_loss": round(loss.item(), 4)}
    with torch.no_grad():
        for split in ("val", "test"):
            t = truth[rows[split]]
            bayes = expected_error(t, t)
            constant = expected_error(t, np.tile(frequencies, (len(t), 1)))
            model_error = expected_error(t, model(*inputs(split)).numpy())
            result[split] = {
                "bayes": round(bayes, 4),
                "constant": round(constant, 4),
                "well_specified": round(model_error, 4),
                "gap_closed": round((constant - model_error) / (constant - bayes), 3),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n-train", type=int, nargs="+", default=[15_000])
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = []
    for n_train in args.n_train:
        start = time.perf_counter()
        root = args.out / f"demo-{n_train}"
        result = ceiling(draw_demo(root, args.seed, n_train), args.steps)
        shutil.rmtree(root)
        result["seconds"] = round(time.perf_counter() - start)
        results.append(result)
        print(json.dumps(result), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
