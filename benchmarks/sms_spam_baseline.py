"""A classical baseline for configs/sms_spam.yaml: scikit-learn's TF-IDF + LogisticRegression.

Trained on configs/data/sms_spam_train.csv, scored on sms_spam_test.csv (the same files dlcli
trains and tests on), with the same vocabulary as the config's TextVectorization: unigrams and
bigrams, the 10,000 most frequent, TF-IDF weights. scikit-learn is in the dev extra.

    .venv/bin/python benchmarks/sms_spam_baseline.py
"""

from __future__ import annotations

import csv
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

DATA = Path(__file__).resolve().parents[1] / "configs" / "data"


def read(name: str) -> tuple[list[str], list[str]]:
    with (DATA / f"sms_spam_{name}.csv").open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return [row["message"] for row in rows], [row["label"] for row in rows]


def main() -> None:
    (train_x, train_y), (test_x, test_y) = read("train"), read("test")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), max_features=10_000)
    train_features, test_features = vectorizer.fit_transform(train_x), vectorizer.transform(test_x)
    for strength in (1.0, 10.0):  # scikit-learn's default C, and a weaker regularization
        model = LogisticRegression(C=strength, max_iter=1000)
        model.fit(train_features, train_y)
        predicted = model.predict(test_features)
        accuracy = sum(p == t for p, t in zip(predicted, test_y, strict=True)) / len(test_y)
        print(
            f"TF-IDF (1-2 grams, 10,000) + LogisticRegression(C={strength:g}) on {len(test_y)} "
            f"test messages: accuracy {accuracy:.4f}"
        )
    majority = max(test_y.count(label) for label in set(test_y)) / len(test_y)
    print(f"Always `ham`: accuracy {majority:.4f}")


if __name__ == "__main__":
    main()
