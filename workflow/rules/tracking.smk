# Around the whole invocation: the leftovers of a killed invocation are cleared first, and
# one MLflow parent run groups every train and evaluate job of this invocation.

from geolifeclef.tracking import PARENT_RUN_ENV, SWEEP_RUNS_ENV


onstart:
    # Only the invocation the user started: its jobs (local or on SLURM) run the Snakefile
    # again, while their siblings may be writing temporaries.
    if IS_MAIN_INVOCATION:
        from geolifeclef.atomic import remove_stale_temporaries
        from geolifeclef.tracking import close_stale_runs, start_parent_run
        from snakemake.logging import logger

        removed = remove_stale_temporaries(["results", "resources"])
        if removed:
            shown = ", ".join(str(p) for p in removed[:5])
            logger.warning(
                f"removed {len(removed)} temporaries of a killed run: {shown}"
            )
        closed = close_stale_runs(TRACKING.uri, TRACKING.experiment, Path.cwd())
        if closed:
            logger.warning(
                f"marked {len(closed)} MLflow runs of a killed run KILLED"
            )
        if EXPERIMENTS and PARENT_RUN_ENV not in os.environ:
            parent = start_parent_run(
                TRACKING.uri,
                TRACKING.experiment,
                f"workflow {os.environ['GLC_INVOCATION_ID']}",
                Path.cwd(),
            )
            if parent:
                os.environ[PARENT_RUN_ENV] = parent
                # One run per sweep groups its members (deleted at the end if none ran).
                sweep_runs = {
                    sweep: start_parent_run(
                        TRACKING.uri,
                        TRACKING.experiment,
                        f"sweep {sweep}",
                        Path.cwd(),
                        parent=parent,
                        tags={"glc.kind": "sweep", "glc.sweep": sweep},
                    )
                    for sweep in SWEEPS
                }
                os.environ[SWEEP_RUNS_ENV] = json.dumps(sweep_runs)


def finish_parent_run(status):
    parent = os.environ.get(PARENT_RUN_ENV)
    if IS_MAIN_INVOCATION and parent:
        from geolifeclef.tracking import end_run, end_sweep_runs

        end_sweep_runs(
            TRACKING.uri, json.loads(os.environ.get(SWEEP_RUNS_ENV, "{}")), status
        )
        end_run(TRACKING.uri, parent, status)


onsuccess:
    finish_parent_run("FINISHED")


onerror:
    finish_parent_run("FAILED")
