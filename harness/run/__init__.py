"""Running a config: its stages, the pipeline that runs them, the worker, launchers, cache, staleness."""
