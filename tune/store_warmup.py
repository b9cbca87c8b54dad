"""The sweep's MLflow store, opened in the background while Ray starts and the cluster is checked.

Importing MLflow and creating the tables of a new SQLite store take seconds (docs/performance.md "Sweep
start-up"), and nothing waits for them until the sweep's parent run is opened after the cluster check. A thread
does both meanwhile; the writer then finds the store ready. A sweep refused before its parent run is opened
leaves no store behind: :meth:`StoreWarmUp.undo` removes the SQLite file the warm-up created.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from dcml_core.tracking import is_remote


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") and not is_remote(uri) else None


class StoreWarmUp:
    """Imports MLflow and opens (for a new SQLite file: creates) the store of ``uri`` in a daemon thread."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        path = sqlite_file(uri)
        self.created = path if path is not None and not path.exists() else None  # ours to remove on refusal
        self._thread = threading.Thread(target=self._run, name="mlflow-store-warm-up", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            from mlflow import MlflowClient

            # "Creating initial MLflow database tables..." on every new store: not news to the user
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
            MlflowClient(self.uri).search_experiments(max_results=1)
        except Exception:  # noqa: BLE001, S110 - the writer opens the store again and reports what is wrong
            pass

    def wait(self) -> None:
        self._thread.join()

    def keep(self) -> None:
        """The sweep goes ahead: the store is its own from now on, :meth:`undo` leaves it alone."""
        self.wait()
        self.created = None

    def undo(self) -> None:
        """After a refusal: remove the SQLite store this warm-up created (and SQLite's side files)."""
        self.wait()
        if self.created is not None:
            for path in (self.created, *(self.created.with_name(self.created.name + s) for s in ("-wal", "-shm", "-journal"))):
                path.unlink(missing_ok=True)
