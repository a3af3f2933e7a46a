"""Distributed differential privacy (work in progress; see submodules)."""
