"""docs/FIDELITY.md is generated from docs/fidelity/*.md: it must be current, and every row complete."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build():
    spec = importlib.util.spec_from_file_location("fidelity_build", ROOT / "docs" / "fidelity" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fidelity_md_is_generated_from_the_fragments():
    assert (ROOT / "docs" / "FIDELITY.md").read_text() == _build().build(), \
        "docs/FIDELITY.md is stale: run .venv/bin/python docs/fidelity/build.py"


def test_every_row_has_five_filled_cells():
    rows = [r for r in (ROOT / "docs" / "FIDELITY.md").read_text().splitlines() if r.startswith("| ") and "---" not in r]
    assert len(rows) > 50
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) >= 5 and all(cells[:5]), row
