"""YAML experiment spec -> typed, validated `Spec`, without importing TensorFlow.

`load.load_spec` reads a file through `yaml_loader` (safe YAML, a key path -> line map, --set
overrides), types it with `schema` (pydantic, unknown keys refused), then checks every Keras
name against `keras_catalog` (through `names`) and the `search:` section against the spec
(`search`). `messages` writes a mistake as one line with its key path and line.
"""
