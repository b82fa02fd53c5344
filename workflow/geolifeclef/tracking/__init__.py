"""MLflow tracking: runs of jobs, the invocation's parent run, and what each run records."""
