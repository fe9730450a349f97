"""Tripline's Python SDK: calls that survive bad networks, an offline queue of critical actions
on disk, and live trip tracking."""

from tripline_client._version import __version__

__all__ = ["__version__"]
