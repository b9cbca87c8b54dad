"""The sweep's MLflow store, made ready while the command checks its input and Ray starts.

Importing MLflow and creating the tables of a new SQLite store take 2.5 s of CPU (docs/performance.md "Sweep
start-up"), and nothing needs the store until the sweep's parent run is opened after the cluster check. For a new
local SQLite store, another process creates the tables from the moment the flags are parsed
(``python -m tune.store_warmup URI``), on the core that the driver's own imports leave idle; a thread of the
driver imports MLflow while Ray starts (:meth:`StoreWarmUp.open`) and opens the store once that process is done.
The writer then finds the store ready.

A sweep refused before its parent run is opened leaves no store behind: :meth:`StoreWarmUp.undo` stops the
creating process and removes the SQLite file and the folders it created, unless a run was written to it
meanwhile (another command on the same new store).
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from dcml_core.tracking import is_remote

_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") and not is_remote(uri) else None


def holds_runs(path: Path) -> bool:
    """Whether the SQLite store at ``path`` holds a run or an experiment besides MLflow's ``Default`` one (a store
    without MLflow's tables, or unreadable, holds none)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0) as db:
            runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            experiments = db.execute("SELECT COUNT(*) FROM experiments WHERE experiment_id <> 0").fetchone()[0]
        return runs + experiments > 0
    except sqlite3.Error:
        return False


def create_store(uri: str) -> None:
    """Open the MLflow store at ``uri``: for a new SQLite file, MLflow creates its tables."""
    # "Creating initial MLflow database tables..." on every new store: not news to the user
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    from mlflow import MlflowClient

    MlflowClient(uri).search_experiments(max_results=1)


class StoreWarmUp:
    """Makes the store of ``uri`` ready: a new local SQLite file is created by another process from now on;
    :meth:`open` imports MLflow in a daemon thread and opens the store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        path = sqlite_file(uri)
        self.created = path if path is not None and not path.exists() else None  # ours to remove on refusal
        self._folders: list[Path] = []  # the folders made for it, outermost first
        self._creator: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._cancelled = threading.Event()
        if self.created is not None:
            self._folders = [p for p in reversed(self.created.parents) if not p.exists()]
            try:
                self.created.parent.mkdir(parents=True, exist_ok=True)
                self._creator = subprocess.Popen(
                    [sys.executable, "-m", "tune.store_warmup", uri],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            except OSError:  # the checks of the URI say what is wrong; the writer opens the store itself
                self._creator = None

    def open(self) -> None:
        """Import MLflow and open the store in a daemon thread (after the creating process, if any)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlflow-store-warm-up", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            import mlflow  # noqa: F401 - while the other process creates the tables

            if self._creator is not None:
                self._creator.wait()
            if not self._cancelled.is_set():
                create_store(self.uri)
        except Exception:  # noqa: BLE001, S110 - the writer opens the store again and reports what is wrong
            pass

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
        elif self._creator is not None:
            self._creator.wait()

    def keep(self) -> None:
        """The sweep goes ahead: the store is its own from now on, :meth:`undo` leaves it alone."""
        self.open()
        self.wait()
        self.created = None

    def undo(self) -> None:
        """After a refusal: stop the creating process; remove the SQLite store (with SQLite's side files) and the
        folders this warm-up created, unless a run was written to the store meanwhile."""
        self._cancelled.set()
        if self._creator is not None and self._creator.poll() is None:
            self._creator.terminate()
        self.wait()
        if self.created is None or holds_runs(self.created):
            return
        for path in (self.created, *(self.created.with_name(self.created.name + s) for s in _SIDE_FILES)):
            path.unlink(missing_ok=True)
        for folder in reversed(self._folders):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
        self.created = None


if __name__ == "__main__":  # the creating process: python -m tune.store_warmup URI
    create_store(sys.argv[1])
