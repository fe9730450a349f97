"""``python -m tripline.sandbox``: serve the sandbox providers."""

from tripline.common.serve import serve
from tripline.sandbox.app import create_app
from tripline.sandbox.settings import SandboxSettings

serve(create_app, SandboxSettings())
