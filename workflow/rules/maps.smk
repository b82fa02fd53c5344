# Species distribution maps (geolifeclef.maps.render, geolifeclef.maps.report) of every
# model that predicts from env values and coordinates alone (geolifeclef.maps.point_models),
# the demo's true maps, and the model descriptions that `geolifeclef query` reads, and each
# region's MESS (geolifeclef.maps.mess: where the maps extrapolate). Not part of `all`: `maps`.

from geolifeclef.layout import REGIONS
from geolifeclef.settings.mappable import unmappable_reason

MAP_REASONS = {m: unmappable_reason(m, CATALOG, BASELINE_SETTINGS) for m in MODELS}
MAPPED_MODELS = [m for m in MODELS if MAP_REASONS[m] is None]
MAP_TRUTH = "truth"  # results/maps/truth/{region}: the demo's true maps
if MAP_TRUTH in MODELS:
    raise ValueError(
        f"config: model name {MAP_TRUTH!r} is reserved for the demo's true maps; rename it"
    )


def map_kind(model):
    """A baseline's family, or experiment or blend (how point_models reloads the model)."""
    return model if MODEL_KIND[model] == "baseline" else MODEL_KIND[model]


def map_model_files(wildcards):
    """What a model's description points to: its trained files (none when not mappable)."""
    model = wildcards.model
    if MAP_REASONS[model] is not None:
        return {}
    files = {
        "species": rules.analyze_class_frequency.output.table,
        "species_details": str(LAYOUT.species_details),
    }
    kind = map_kind(model)
    if kind == "experiment":
        files["model"] = expand(rules.train_model.output.model, experiment=model)[0]
        files["stats"] = rules.compute_normalization_stats.output.stats
    elif kind == "blend":
        files["parts"] = expand(
            rules.describe_map_model.output.card, model=list(config["blends"][model])
        )
    else:
        files["model"] = getattr(rules, f"predict_{kind}").output.model
    return files


rule describe_map_model:
    input:
        unpack(map_model_files),
    output:
        card=results("maps/{model}/model.json"),
    log:
        logs("describe_map_model/{model}"),
    benchmark:
        benchmarks("describe_map_model/{model}")
    wildcard_constraints:
        model=one_of(MODELS),
    conda:
        ENVIRONMENT
    params:
        kind=lambda wildcards: map_kind(wildcards.model),
        reason=lambda wildcards: MAP_REASONS[wildcards.model] or "",
        parts=lambda wildcards: [
            [part, weight]
            for part, weight in config["blends"].get(wildcards.model, {}).items()
        ],
        data_root=str(DATA_ROOT),
    script:
        "../scripts/describe_map_model.py"


rule map_demo_truth:
    input:
        world=rules.generate_demo_dataset.output.world,
        species=rules.analyze_class_frequency.output.table,
        species_details=str(LAYOUT.species_details),
        rasters=archive_files("rasters"),
    output:
        maps=directory(results(f"maps/{MAP_TRUTH}/{{region}}")),
    log:
        logs("map_demo_truth/{region}"),
    benchmark:
        benchmarks("map_demo_truth/{region}")
    wildcard_constraints:
        region=one_of(REGIONS),
    conda:
        ENVIRONMENT
    # One core each: a map job's CPU time equals its wall time (measured), so two at once
    # on two cores finish the demo's maps in half the time.
    threads: 1
    params:
        settings=SETTINGS.maps,
        settings_key=rerun_key(SETTINGS.maps),
        data_root=str(DATA_ROOT),
    script:
        "../scripts/map_demo_truth.py"


rule map_mess:
    input:
        train=rules.ingest_observations.output.train,
        env=rules.extract_env.output.table,
        rasters=archive_files("rasters"),
    output:
        mess=results("mess/{region}.tif"),
        summary=results("mess/{region}.json"),
    log:
        logs("map_mess/{region}"),
    benchmark:
        benchmarks("map_mess/{region}")
    wildcard_constraints:
        region=one_of(REGIONS),
    conda:
        ENVIRONMENT
    threads: 1  # as map_demo_truth
    params:
        settings=SETTINGS.mess,
        settings_key=rerun_key(SETTINGS.mess),
        resolution=SETTINGS.maps.resolution,
        data_root=str(DATA_ROOT),
    script:
        "../scripts/map_mess.py"


rule map_model:
    input:
        card=rules.describe_map_model.output.card,
        species=rules.analyze_class_frequency.output.table,
        species_details=str(LAYOUT.species_details),
        train=rules.ingest_observations.output.train,
        rasters=archive_files("rasters"),
        # The demo's true maps, to compare with.
        truth=rules.map_demo_truth.output.maps if USING_DEMO else [],
        # Where the region's conditions lie outside the training data's: hatched.
        mess=rules.map_mess.output.mess,
    output:
        maps=report(
            directory(results("maps/{model}/{region}")),
            patterns=["{name}.png"],
            caption="../report/maps.rst",
            category="Maps",
            subcategory="{model}",
            # Region first: a later label with two values would become a toggle, and a
            # region's species have no counterpart in the other region.
            labels={"region": "{region}", "map": "{name}", "model": "{model}"},
        ),
        metrics=results("maps/{model}/{region}.json"),
    log:
        logs("map_model/{model}_{region}"),
    benchmark:
        benchmarks("map_model/{model}_{region}")
    wildcard_constraints:
        model=one_of(MAPPED_MODELS),
        region=one_of(REGIONS),
    conda:
        ENVIRONMENT
    threads: 1  # as map_demo_truth
    params:
        settings=SETTINGS.maps,
        settings_key=rerun_key(SETTINGS.maps),
        data_root=str(DATA_ROOT),
        local_metrics=results("maps/{model}/{region}.jsonl"),
    script:
        "../scripts/map_model.py"


rule summarize_maps:
    input:
        metrics=expand(
            rules.map_model.output.metrics, model=MAPPED_MODELS, region=REGIONS
        ),
        cards=expand(rules.describe_map_model.output.card, model=MODELS),
    output:
        **(
            {
                "plot": report(
                    results("maps/correlations.png"),
                    caption="../report/map_correlations.rst",
                    category="Maps",
                    subcategory="Summary",
                )
            }
            if USING_DEMO
            else {}
        ),
        table=results("maps/correlations.parquet"),
        markdown=results("maps/summary.md"),
        # Correlations with the true maps: the demo only.
    log:
        logs("summarize_maps"),
    benchmark:
        benchmarks("summarize_maps")
    conda:
        ENVIRONMENT
    script:
        "../scripts/summarize_maps.py"


rule maps:
    input:
        rules.summarize_maps.output,
