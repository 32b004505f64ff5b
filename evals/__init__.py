"""Evaluation suites and judges. Each module registers its entries with harness.registry."""
