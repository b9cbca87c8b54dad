"""Exit codes of the commands, defined once: ``python -m dcml_core.train``, ``python -m dcml_core.evaluate``
(and the sweep command may use them too)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2  # bad flags, configuration, data root, tracking URI or checkpoint: one line on stderr
EXIT_TRAINING_FAILED = 1  # training ran and failed as a run (e.g. the embeddings collapsed): one line on stderr
