"""tools/ is not a package: its helper packages (tools/default_model) are imported from that folder, as the tools do."""

import os
import sys

TOOLS = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "tools"))
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)
