"""MLflow mirroring of runs and studies (an optional dependency: `pip install 'dlcli[mlflow]'`).

`mlflow_run` says where a run is tracked and opens, continues and ends MLflow runs; `callback`
sends each epoch's values off the training thread; `tracked` holds a training run's MLflow run
from fit to its end; `study_run` makes a search a parent run and each trial a child run.
MLflow itself is imported only inside the functions that talk to it.
"""
