"""Imported by a worker as a model's ``preload``: records the niceness its load runs at.

The file named by ``TFHOST_NICE_PROBE`` gets the loading thread's niceness, so a test can
see that a worker loads at a lower priority than it serves.
"""

from __future__ import annotations

import os
from pathlib import Path

Path(os.environ["TFHOST_NICE_PROBE"]).write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))
