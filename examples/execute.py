"""Execute a notebook of this folder and store it with its outputs (what GitHub renders).

    python examples/execute.py examples/visum-in-a-notebook.ipynb [--out FILE]

The notebook runs in a new temporary folder (what it saves goes there); with ``--out`` the
executed copy is written there instead of over the notebook. Exit status 1 when a cell fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def execute(path: Path, out: Path, timeout: int = 900) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="visum-notebook-") as cwd:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
    nbformat.write(nb, out)
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    try:
        execute(args.notebook, args.out or args.notebook)
    except CellExecutionError as exc:
        print(f"{args.notebook}: a cell failed:\n{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
