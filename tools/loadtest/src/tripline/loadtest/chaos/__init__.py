"""The chaos suite's machinery (``make chaos``, ``tests/chaos``): one fault injected into a
private stack while k6 loads it and a Python client drives critical traffic and writes whose
every acknowledgement it records, then the figures and verdicts of that fault."""
