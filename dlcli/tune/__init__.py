"""`dlcli tune`: a hyperparameter search over `--set` key paths, on an Optuna study.

`tuner.tune` checks the search (`space`), opens the study (`study`), runs its trials (`trial`,
each a normal training run) and writes what the best one leaves (`best`).
"""
