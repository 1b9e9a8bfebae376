"""Write configs/data/sunspots.csv from the `statsmodels` wheel (the data is public domain).

The wheel is fetched with pip (your pip configuration and mirrors apply) and read as a zip: it
is never installed or imported. Its `sunspots.csv` (yearly sunspot numbers 1700-2008, the
columns YEAR and SUNACTIVITY) is checked by sha256 and written as it is: every statsmodels
wheel holds the same file, whatever the platform the wheel is for.

    .venv/bin/python benchmarks/sunspots_data.py
"""

from __future__ import annotations

from pathlib import Path

from wheel_data import wheel_member

WHEEL = "statsmodels==0.15.0"
MEMBER = "statsmodels/datasets/sunspots/sunspots.csv"
SHA256 = "f67889b1d9002cd5227f0e0ef54e35b419cdd85a31279adef6f73fb41e5c0a9b"
TARGET = Path(__file__).resolve().parents[1] / "configs" / "data" / "sunspots.csv"


def main() -> None:
    text = wheel_member(WHEEL, MEMBER, SHA256)
    TARGET.write_bytes(text)
    rows = len(text.splitlines()) - 1  # after the header
    print(f"configs/data/sunspots.csv: {rows} rows")


if __name__ == "__main__":
    main()
