"""Every ranked model as an MLflow model: rows of the observation tables in, their top K
species out, through the code that predicted them in the workflow (``models``)."""
