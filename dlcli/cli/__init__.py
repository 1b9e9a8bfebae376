"""The command line: a thin layer over the library.

`app` holds the Typer app and the entry point; each `*_commands` module is one group of
commands (train, spec, inference, tune, runs), which parse their arguments, call one library
function and hand the result to `render` (or `render_tune`). `options` declares the options
that several commands share, `user_errors` turns a DlcliError into one `Error:` line and its
exit code, and `terminal` says where output goes.
"""
