# Sweeps (config `sweeps`, geolifeclef.settings.sweeps): members are experiments like any other;
# here each sweep gets its summary (members ranked, varied settings, error against each
# setting) and a target `sweep_<name>` that builds every member through evaluation.


rule summarize_sweep:
    input:
        lambda wildcards: expand(
            rules.evaluate_model.output.metrics,
            model=list(SWEEPS[wildcards.sweep].members),
        ),
    output:
        table=results("sweeps/{sweep}/members.md"),
        plot=report(
            results("sweeps/{sweep}/settings.png"),
            caption="../report/sweep.rst",
            category="Sweeps",
            labels={"sweep": "{sweep}"},
        ),
    log:
        logs("summarize_sweep/{sweep}"),
    benchmark:
        benchmarks("summarize_sweep/{sweep}")
    wildcard_constraints:
        sweep=one_of(list(SWEEPS)),
    conda:
        ENVIRONMENT
    params:
        sweep=lambda wildcards: sweep_description(wildcards.sweep),
    script:
        "../scripts/summarize_sweep.py"


for _sweep in SWEEPS:

    rule:
        name:
            f"sweep_{_sweep}"
        input:
            expand(rules.summarize_sweep.output, sweep=_sweep),


rule sweeps:
    input:
        expand(rules.summarize_sweep.output, sweep=list(SWEEPS)),
