"""Spec.model -> keras.Model, and the trained model as a file.

`build` makes and compiles the model through Keras's own namespaces; `signature` says what it
takes and gives (input shapes, outputs, the task of each); `checks` compares the data with the
model, its loss and its metrics before fit; `scoring` gives the numbers of a model on labelled
examples. `artifact` writes and reads model.keras with its dlcli.json, after `archive` checked
the zip safe to load.
"""
