"""Spec.dataset -> Splits (train / validation / test) + DatasetInfo.

`load.load_dataset` reads the one source a spec names, through its module: `keras_datasets`
(with `mnist_mirrors` for MNIST offline), `npz`, `inline`, `csv_tables` (`time_windows` for
a series), `image_folders` and `text_folders`; `decode` turns one image file into model input,
the same code `dlcli predict` uses (as `text_folders.read_text` does a .txt file). `common`
holds the shared types and array checks; `example_stream` the face of examples made a batch
at a time in place of an array (`image_stream`'s files, `time_windows`' windows).
"""
