"""The one family of user-facing errors; each class has its own exit code.

Library code raises these; only `dlcli.cli.app` catches them and turns them into one line on
stderr and the exit code below. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DlcliError(Exception):
    """A mistake the user can fix; `str(error)` is the one line shown."""

    exit_code = 1


class UsageError(DlcliError):
    """The command line asks for something that cannot be done (e.g. resume a finished run)."""

    exit_code = 2


class ConfigError(DlcliError):
    """The spec (YAML file or --set override) is malformed or invalid."""

    exit_code = 3


class DataError(DlcliError):
    """The dataset cannot be loaded or does not fit the model and loss."""

    exit_code = 4


class DownloadError(DataError):
    """Every source of a dataset failed (no network, digest mismatch, no mirror)."""

    exit_code = 5


class ModelFileError(DlcliError):
    """A model file is missing, corrupt, unsafe or not a dlcli model."""

    exit_code = 6


class InputError(DlcliError):
    """An input to predict (image, csv, npy) cannot be read or does not fit the model."""

    exit_code = 7


class InputTooLargeError(InputError):
    """An input to predict is over a size limit (pixels of an image, bytes of a CSV file)."""


class TrainingError(DlcliError):
    """Training failed for a reason the user can act on."""

    exit_code = 8


class NonFiniteLossError(TrainingError):
    """The loss became NaN or Inf; nothing was saved as the result."""

    exit_code = 9


class OutOfMemoryError(TrainingError):
    """A batch did not fit in memory."""

    exit_code = 10


class OutputError(DlcliError):
    """A result file or run directory cannot be written."""

    exit_code = 11


class ExportError(DlcliError):
    """An export failed, or the exported file does not give the Keras model's outputs."""

    exit_code = 12


class StudyError(DlcliError):
    """A search's study cannot be used: its storage is unreachable or malformed, or it belongs
    to another spec."""

    exit_code = 13


class ClusterError(DlcliError):
    """Training on several workers cannot start or go on: TF_CONFIG is malformed, a worker
    cannot be reached or has stopped, or the workers do not agree."""

    exit_code = 14


class ServerError(DlcliError):
    """`dlcli serve` cannot start: its address cannot be bound (a port taken, a host that is
    not this machine's), or its options cannot be met."""

    exit_code = 15


class Interrupted(DlcliError):
    """Training was stopped by SIGINT or SIGTERM after a backup was written."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


EXIT_CODES: dict[str, int] = {
    "UsageError": UsageError.exit_code,
    "ConfigError": ConfigError.exit_code,
    "DataError": DataError.exit_code,
    "DownloadError": DownloadError.exit_code,
    "ModelFileError": ModelFileError.exit_code,
    "InputError": InputError.exit_code,
    "TrainingError": TrainingError.exit_code,
    "NonFiniteLossError": NonFiniteLossError.exit_code,
    "OutOfMemoryError": OutOfMemoryError.exit_code,
    "OutputError": OutputError.exit_code,
    "ExportError": ExportError.exit_code,
    "StudyError": StudyError.exit_code,
    "ClusterError": ClusterError.exit_code,
    "ServerError": ServerError.exit_code,
}
