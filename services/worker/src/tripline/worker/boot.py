"""This run of the worker process, as others can tell it apart from a later run under the same
node name: set once when the module is first imported, in the main process, and inherited by
the pool's children (forked or threads)."""

from __future__ import annotations

import uuid

BOOT_ID = uuid.uuid4().hex
