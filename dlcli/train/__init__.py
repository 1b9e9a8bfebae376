"""Training: a spec becomes a trained, evaluated, saved model in its own run folder.

`pipeline.run` and `pipeline.train`: prepare (data, model, checks) -> fit -> finish (scores,
model.keras, plots). Around fit: `loop` (compiled executions), `callbacks` (progress, signals,
NaN), `backup` and `resume` (a run that can be continued), `warm_start` (initial weights,
frozen layers), `sample_weights`, `model_info` (the dlcli.json), `export_onnx` (model.onnx at the
end). Several processes: `workers` (one of a cluster) and `launch` (`--workers N`).
"""
