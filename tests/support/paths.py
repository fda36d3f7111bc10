"""Where the project's own data and the shared outcome data are, from any test folder."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "data" / "queries"
SHARED = ROOT.parent / "shared" / "data"  # real outcome data beside the project; may be absent
