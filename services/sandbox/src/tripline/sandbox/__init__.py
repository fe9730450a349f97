"""Local stand-ins for the outside payment and notification providers.

One process serves both providers under ``/v1/payments`` and ``/v1/notifications``; ``/control``
makes either of them fail, hang or slow down on demand so callers can exercise their circuit
breakers against something real.
"""
