"""A runnable example of the SDK: a rider and a driver share one trip over a deliberately flaky
network (requests refused, answers lost, a tunnel with no signal at all), using only the SDK's
public API. Run ``python -m tripline_client.demo --help``."""

from tripline_client.demo.cli import main

__all__ = ["main"]
