"""Losses, trainers, the online iteration loop, generation backends and rankers."""
