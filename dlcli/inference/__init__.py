"""What is done with a trained model: evaluate, predict, export.

`evaluate` scores a model on a split or a file; `predict` ranks the classes (or values) of new
inputs, read by `inputs`, with the model `pick_model` chooses when none is given; `export`
writes a deployment format verified in its own runtime (`runtimes`). `choices` names what a
user picks among (splits, runtimes, formats, quantizations).
"""
