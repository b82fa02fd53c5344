"""Baselines: the honest reference points every model is compared with.

One module per baseline family (its record: ``geolifeclef.settings.families``), each giving
:class:`~geolifeclef.predictions.table.Predictions` (probabilities of the top K species per
observation), the same format as any model, so they are evaluated, blended, submitted,
mapped and served the same way. All are fitted on the train subset only: val stays an
honest estimate of the test error. The default ones:

* ``constant``: the 30 (K) species most observed in train, for every observation, scored by
  their train prior -- what a model must beat to have learned anything (0.935 on the real val).
* ``knn``: the species of the ``n_neighbors`` nearest train observations (great-circle
  distance), as vote shares smoothed towards the prior -- "what was seen nearby".
* ``random_forest``: the organizers' recipe by default, 16 trees of depth 10 on the 27
  environmental variables (here plus latitude and longitude) -- 0.804 on the real val with
  env only; its features and size are settings, so the 1st place's forest (32 trees of
  depth 12 on env, coordinates, country and patch statistics, on train + val) is one too.

And, when a config names it, ``region_prior``: the constant of the observation's region.

With ``refit``, a baseline's test predictions come from train + val (``fitting_rows``); its
val predictions, and so its place on the leaderboard, stay those of the train-only fit.
"""
