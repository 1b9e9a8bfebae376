"""Run folders: `runs/<name>-<n>/` and what their files say.

`record` creates a run folder and writes its run.json and history.csv; `folder` reads a
folder's backup generations and lock holders by the same rules for `dlcli train` and `dlcli
runs`; `listing` lists and compares runs from their files alone, without TensorFlow.
"""
