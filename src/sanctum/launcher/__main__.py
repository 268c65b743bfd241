"""``python -m sanctum.launcher``: run the launcher (the frozen executable's entry point)."""

from __future__ import annotations

import sys

from sanctum.launcher.main import main

sys.exit(main())
