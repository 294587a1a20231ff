"""Fake towns (being split into modules; see train.py)."""

from .train import *  # noqa: F401,F403
