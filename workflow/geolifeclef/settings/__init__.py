"""The typed settings of a workflow, built when it is parsed: every section (``workflow``),
the model families (``families``), experiments, inputs, catalog and sweeps.

Torch-free: the only sub-package the Snakefile imports (with the top-level modules
``layout``, ``atomic`` and ``errors``), so that parsing the workflow stays fast.
"""
