"""Where the project's own data and the shared outcome data are, from any test folder."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "data" / "queries"
# Real outcome data beside the project; may be absent. RUNG_SHARED_DATA points elsewhere (a
# git worktree sits deeper than the main checkout).
SHARED = Path(os.environ.get("RUNG_SHARED_DATA", ROOT.parent / "shared" / "data"))
