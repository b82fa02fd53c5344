"""Evaluation: scores, the leaderboard (table, page, figure), sweep reports, the submission."""
