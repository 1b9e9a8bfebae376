"""Where training runs: the device strategy of one machine, a cluster of several.

`device` chooses the strategy, mixed precision and the compiled-program cache and imports
TensorFlow and Keras (on the main thread only); `cluster` reads TF_CONFIG and waits for the
workers; `keras_fixes` holds the version-guarded fixes of Keras, the only place that touches
its private names.
"""
