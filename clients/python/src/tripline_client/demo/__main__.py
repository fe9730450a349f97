"""``python -m tripline_client.demo``: the demo's exit status is its verdict (0: all went well)."""

from tripline_client.demo import main

raise SystemExit(main())
