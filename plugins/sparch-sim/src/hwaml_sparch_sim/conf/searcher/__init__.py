"""Hydra config group (a package so pkg:// search paths find it)."""
