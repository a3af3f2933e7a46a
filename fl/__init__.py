"""Federated learning on top of secure aggregation (needs the ``fl`` extra)."""
