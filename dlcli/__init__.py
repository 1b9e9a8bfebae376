"""dlcli: YAML experiment specs in, trained Keras models out."""

__version__ = "0.1.0"
