"""The engine's configuration: :mod:`~engine.config.settings` (the validated models, what
each section means, the redacted summary and exposure warnings) and
:mod:`~engine.config.loader` (the file, the ``CTC_*`` environment overrides and errors that
name ``file:line: field``). The YAML-with-line-numbers reading both rely on is
:mod:`engine.yaml_lines`, shared with the IVR menu files."""
