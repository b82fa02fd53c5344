# Class frequencies, baselines, evaluation and the Kaggle submission.
