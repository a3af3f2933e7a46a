"""Every ratio the README quotes ("4.7×", "25–78×") is one that BENCHMARKS.md records.

BENCHMARKS.md holds the output of the benchmark runs, where ratios print as
``26.9x`` (or ``x240``). A README figure matches a recorded ratio when the
recorded one, rounded to the README's number of decimals, reads the same; a
range needs both ends recorded. Goals ("≥ 20×", "≤ 1.5× floor") are targets,
not measurements, and are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NUMBER = r"\d+(?:\.\d+)?"
# "4.7×", "25–78×", "2.1x" (README); a range uses an en dash or a hyphen.
QUOTED = re.compile(rf"({NUMBER})(?:\s*[–-]\s*({NUMBER}))?\s*(?:×|x(?![0-9A-Za-z]))")
# "26.9x", "2.0 ×" or "x240" (BENCHMARKS.md tables).
RECORDED = re.compile(rf"({NUMBER})\s*[x×](?![0-9A-Za-z])|(?<![0-9A-Za-z])x({NUMBER})\b")
GOAL_MARKS = ("≥", "≤", ">=", "<=", ">", "<")


def quoted_ratios(text: str) -> list[tuple[str, list[str]]]:
    """(the quoted text, its numbers) for each ratio in ``text`` that is not a goal."""
    out = []
    for match in QUOTED.finditer(text):
        before = text[max(0, match.start() - 4):match.start()].rstrip()
        if before.endswith(GOAL_MARKS):
            continue
        out.append((match.group(0), [g for g in match.groups() if g is not None]))
    return out


def recorded_ratios(text: str) -> list[float]:
    return [float(a or b) for a, b in RECORDED.findall(text)]


def is_recorded(figure: str, recorded: list[float]) -> bool:
    decimals = len(figure.partition(".")[2])
    return any(f"{value:.{decimals}f}" == figure for value in recorded)


def test_quoted_ratio_parsing() -> None:
    text = "ours is 25–78× faster, 4.7× at d=1M, 2.1x the update (goal ≤ 3×; ≥ 20×)"
    assert [numbers for _, numbers in quoted_ratios(text)] == [["25", "78"], ["4.7"], ["2.1"]]
    assert recorded_ratios("26.9x T/ T, ours/raw 1.17x, x240, 0x1f") == [26.9, 1.17, 240.0]
    assert is_recorded("2.1", [2.13]) and is_recorded("27", [26.9]) and not is_recorded("2.2", [2.13])


def test_every_readme_ratio_is_in_benchmarks_md() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    recorded = recorded_ratios((ROOT / "BENCHMARKS.md").read_text(encoding="utf-8"))
    quoted = quoted_ratios(readme)
    assert quoted, "no ratio found in README.md: is the pattern still right?"
    unrecorded = [text for text, numbers in quoted if not all(is_recorded(n, recorded) for n in numbers)]
    assert not unrecorded, f"README.md quotes ratios that BENCHMARKS.md does not record: {unrecorded}"
