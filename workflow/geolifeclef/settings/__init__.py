"""The typed settings of a workflow: configs, experiments, inputs, catalog and sweeps.

Torch-free: the only sub-package the Snakefile imports (with the top-level modules
``layout``, ``atomic`` and ``errors``), so that parsing the workflow stays fast.
"""
