"""Reading runs: the leaderboard, compare, plots, the HTML report with its drill-downs, model cards."""
