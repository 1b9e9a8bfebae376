"""`dlcli tune`: a hyperparameter search over `--set` key paths, on an Optuna study.

`tuner.tune` checks the search (`space`), opens the study (`study`, through `storage`: a
storage URL opened, its driver named when missing, its tables made by processes started
together), runs its trials (`trial`, each a normal training run) and writes what the best one
leaves (`best`).
"""
