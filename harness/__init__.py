"""selm-bench harness: config, registry, orchestration, run store, leaderboard."""

__version__ = "0.1.0"
