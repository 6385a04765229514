import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small tensors: one thread avoids paying OpenMP synchronisation on a busy 2-core machine
    (EfficientNet-Lite0's forward+backward went from 0.04 s to seconds with two)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(capsys, *args):
    """``visum ARGS`` in-process: ``(exit code, stdout, stderr)``."""
    from visum.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def visum_command(*args) -> list[str]:
    """``python -m visum.cli ARGS`` for a subprocess (a run that can be killed, or that starts its own Ray)."""
    import sys

    return [sys.executable, "-m", "visum.cli", *map(str, args)]


def one_line_error(capsys, *args) -> str:
    """``visum ARGS`` must fail as a user error: exit 2 and one line ``visum: error: ...``, returned."""
    code, out, err = run_cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("visum: error: ")
    return lines[0]


def manifest_without_timings(folder: Path) -> dict:
    """A run's manifest.json as a dict, its timings left out (they differ from run to run)."""
    import json

    data = json.loads((Path(folder) / "manifest.json").read_text())
    data.pop("timings")
    return data


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never read or write the user's cache unless they pass their own --cache-dir."""
    old = os.environ.get("VISUM_CACHE_DIR")
    os.environ["VISUM_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "visum-cache")
    yield
    if old is None:
        os.environ.pop("VISUM_CACHE_DIR", None)
    else:
        os.environ["VISUM_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def parts_folder(tmp_path_factory) -> Path:
    """Eight main-class images of the parts benchmark, generated once."""
    from visum.data.parts import make_dataset, write_dataset

    folder = tmp_path_factory.mktemp("parts8")
    write_dataset(make_dataset(8, seed=4242, labels=[0]), folder)
    return folder


def foolbox_images() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "data"
    return folder if any(folder.glob("imagenet_*.jpg")) else None


def benchmark_script(name: str):
    """The module ``benchmarks/NAME.py`` (a script, not a package), imported for its functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
