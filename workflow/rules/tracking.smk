# Around the whole invocation: what dead processes left is cleared first (not what an
# invocation running beside this one writes), and one MLflow parent run groups every
# train and evaluate job of this invocation.

from geolifeclef.settings.tracking import PARENT_RUN_ENV, SWEEP_RUNS_ENV

STOP_SIGNAL = None
"""geolifeclef.tracking.invocation.StopSignal of the invocation the user started."""


onstart:
    # Only the invocation the user started: its jobs (local or on SLURM) run the Snakefile
    # again, while their siblings may be writing temporaries.
    if IS_MAIN_INVOCATION:
        from geolifeclef.atomic import remove_stale_temporaries
        from geolifeclef.tracking.invocation import (
            StopSignal,
            close_stale_runs,
            start_parent_run,
        )
        from snakemake.logging import logger

        global STOP_SIGNAL
        # Here, after Snakemake's scheduler set its own handler, which it calls.
        STOP_SIGNAL = StopSignal()
        temporaries = remove_stale_temporaries(["results", "resources"])
        runs = close_stale_runs(TRACKING.uri, TRACKING.experiment, Path.cwd())
        for line in [*temporaries.messages(), *runs.messages()]:
            logger.warning(line)
        if tracked_jobs_to_run() and PARENT_RUN_ENV not in os.environ:
            from geolifeclef.tracking.records import (
                describe_invocation,
                invocation_run_name,
            )

            targets = invocation_targets()
            parent = start_parent_run(
                TRACKING.uri,
                TRACKING.experiment,
                invocation_run_name(targets),
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
                describe_invocation(
                    TRACKING.uri, parent, targets, config, workflow.configfiles
                )


def invocation_targets():
    """What the user asked for: the targets on the command line, or the default rule."""
    targets = workflow.dag_settings.targets or [workflow.default_target]
    return sorted(str(target) for target in targets if target)


def tracked_jobs_to_run():
    """Whether this invocation runs a job that logs to MLflow (else: no parent run)."""
    from geolifeclef.tracking.records import TRACKED_RULES

    return any(job.rule.name in TRACKED_RULES for job in workflow.dag.needrun_jobs())


def finish_parent_run(status):
    parent = os.environ.get(PARENT_RUN_ENV)
    if IS_MAIN_INVOCATION and parent:
        from geolifeclef.tracking.invocation import end_sweep_runs
        from geolifeclef.tracking.runs import end_run
        from geolifeclef.tracking.records import runs_page
        from snakemake.logging import logger

        end_sweep_runs(
            TRACKING.uri, json.loads(os.environ.get(SWEEP_RUNS_ENV, "{}")), status
        )
        end_run(TRACKING.uri, parent, status)
        page = runs_page(TRACKING.uri, parent, TASK)
        if page:
            logger.info(page)


onsuccess:
    finish_parent_run("FINISHED")


onerror:
    if STOP_SIGNAL is not None and STOP_SIGNAL.received is not None:
        finish_stopped_invocation(STOP_SIGNAL.received)
    finish_parent_run("FAILED")


def finish_stopped_invocation(number):
    """After a SIGTERM, Snakemake let the running jobs end and calls onerror: end the parent
    run and the process as what happened says (geolifeclef.tracking.invocation), not as a
    failure. Leaving by SystemExit keeps Snakemake from saying that a job failed."""
    from geolifeclef.tracking.invocation import stopped_invocation
    from snakemake.logging import logger

    failed = set(workflow.scheduler.failed)
    left = list(workflow.dag.needrun_jobs())
    status, message, exit_status = stopped_invocation(
        number,
        finished=sum(1 for _ in workflow.dag.finished_jobs),
        unfinished=len(failed),
        not_started=len([job for job in left if job not in failed]),
    )
    finish_parent_run(status)
    (logger.info if exit_status == 0 else logger.warning)(message)
    raise SystemExit(exit_status)
