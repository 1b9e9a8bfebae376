"""Commands about a spec itself: `validate`, `summary` and `schema`."""

from __future__ import annotations

import typer

from dlcli.cli.options import Overrides, SpecPath
from dlcli.cli.terminal import console
from dlcli.cli.user_errors import user_errors


def validate(context: typer.Context, spec_path: SpecPath, overrides: Overrides = []) -> None:  # noqa: B006
    """Check a spec without training (instant: TensorFlow is not loaded).

    Example: dlcli validate configs/mnist.yaml
    """
    with user_errors(context):
        from dlcli.data.load import check_files
        from dlcli.model.backbones import check_weights_files
        from dlcli.spec.load import load_spec

        spec = load_spec(spec_path, overrides)
        check_files(spec.dataset, spec_path.parent, spec_path)
        check_weights_files(spec.model, spec_path.parent, spec_path)
        print(f"{spec_path}: valid ({spec.name}: {len(spec.model.layers)} layers)")


def summary(context: typer.Context, spec_path: SpecPath, overrides: Overrides = []) -> None:  # noqa: B006
    """Build the model a spec describes and print its layers and parameter counts.

    Example: dlcli summary configs/mnist_cnn.yaml
    """
    with user_errors(context, tensorflow=True):
        from dlcli.model.build import summarize

        stdout = console()
        for line in summarize(spec_path, overrides):
            stdout.print(line, markup=False, highlight=False)


def schema() -> None:
    """Print the JSON Schema of the spec (for editor completion and checks).

    Example: dlcli schema > dlcli-spec.schema.json
    """
    from dlcli.spec.load import json_schema

    print(json_schema())
