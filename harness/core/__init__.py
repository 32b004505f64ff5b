"""The harness's core: the registry and its protocols, the typed config, stage specs and the run store."""
