"""A classical baseline for configs/penguins.yaml: scikit-learn's HistGradientBoosting.

Trained on configs/data/penguins_train.csv, scored on penguins_test.csv (the same files
dlcli trains and tests on), categorical columns as categories, empty cells as missing values
(which the trees route natively). scikit-learn is a development tool here, not a dependency.

    .venv/bin/pip install scikit-learn pandas && .venv/bin/python benchmarks/penguins_baseline.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

DATA = Path(__file__).resolve().parents[1] / "configs" / "data"
CATEGORICAL = ["island", "sex", "year"]


def main() -> None:
    train, test = (pd.read_csv(DATA / f"penguins_{name}.csv") for name in ("train", "test"))
    for column in CATEGORICAL:  # the test's categories coded as the training's
        train[column] = train[column].astype("category")
        test[column] = pd.Categorical(test[column], categories=train[column].cat.categories)
    features = [column for column in train.columns if column != "species"]
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=42)
    model.fit(train[features], train["species"])
    accuracy = (model.predict(test[features]) == test["species"]).mean()
    print(f"HistGradientBoostingClassifier on {len(test)} test rows: accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
