"""``visum sweep --engine ray``: the same cells as the local engine, resumable after the driver is killed,
and across two Ray nodes on this machine. Each test starts and stops its own Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import manifest_without_timings, visum_command as visum, run_cli

ray = pytest.importorskip("ray", reason="Ray is the optional extra visum[ray]") if os.environ.get(
    "VISUM_RAY_OPTIONAL") else __import__("ray")  # CI installs it (the test extra): there it must be importable

SWEEP = """
models = ["parts"]
saliency = [{methods}]
[[classes]]
name = "parts"
[run]
benchmark_images = 6
"""
ENV = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def sweep_file(tmp_path: Path, methods: list[str]) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(methods=", ".join(f'"{m}"' for m in methods)))
    return path


def cell_manifests(out: Path) -> dict[str, dict]:
    return {p.parent.name: manifest_without_timings(p.parent) for p in sorted((out / "cells").glob("*/manifest.json"))
            if not p.parent.name.startswith(".")}  # a killed cell's staging folder is not a cell


@pytest.fixture(scope="module")
def local_cells(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The three cells run by the local engine: what every Ray run must give."""
    tmp = tmp_path_factory.mktemp("local")
    sweep = sweep_file(tmp, ["gradient", "gradcam", "integrated-gradients"])
    done = subprocess.run(visum("sweep", sweep, "--out", tmp / "s", "--cache-dir", tmp / "c", "-q"), env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    cells = cell_manifests(tmp / "s")
    assert len(cells) == 3
    return tmp, cells


def test_ray_sweep_gives_the_local_engines_cells(tmp_path, local_cells):
    sweep = sweep_file(tmp_path, ["gradient", "gradcam", "integrated-gradients"])
    done = subprocess.run(visum("sweep", sweep, "--out", tmp_path / "s", "--engine", "ray", "--cache-dir",
                                tmp_path / "c"), env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "ray: 3 cells on" in done.stderr
    assert cell_manifests(tmp_path / "s") == local_cells[1]
    ours = json.loads((tmp_path / "s" / "sweep.json").read_text())
    theirs = json.loads((local_cells[0] / "s" / "sweep.json").read_text())
    assert ours == theirs


def test_a_killed_driver_is_resumed_cell_by_cell(tmp_path, local_cells):
    sweep = sweep_file(tmp_path, ["gradient", "gradcam", "integrated-gradients"])
    out = tmp_path / "s"
    driver = subprocess.Popen(visum("sweep", sweep, "--out", out, "--engine", "ray", "--cache-dir", tmp_path / "c",
                                    "-q"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its own process group: what it started can be cleaned up
    try:
        started = time.monotonic()
        while driver.poll() is None and time.monotonic() - started < 600:
            if (out / "cells").is_dir() and any((out / "cells").glob("*.json")):
                driver.send_signal(signal.SIGKILL)  # the driver alone; Ray's own processes are left behind
                break
            time.sleep(0.05)
        assert driver.wait() == -signal.SIGKILL, "the sweep ended before its driver could be killed"
    finally:  # what the killed driver's local Ray left running (its workers are not in the driver's group)
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stop_ray()
    finished = len(list((out / "cells").glob("*.json")))
    assert 1 <= finished < 3
    done = subprocess.run(visum("sweep", sweep, "--out", out, "--engine", "ray", "--cache-dir", tmp_path / "c"),
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert f"{finished} of 3 cells already done" in done.stderr
    assert cell_manifests(out) == local_cells[1]


def stop_ray() -> None:
    """``ray stop --force``: every Ray process of this machine (the tests of this file run one at a time)."""
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], env=ENV, capture_output=True,
                   timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cluster_of_two_ray_nodes_on_this_machine_runs_the_cells_with_a_shared_cache(tmp_path, local_cells):
    import secrets

    port = _free_port()
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    address = f"127.0.0.1:{port}"
    # a cluster of several nodes authenticates them with a shared token (Ray's token auth): every node and the driver
    env = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    node = ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    try:
        head = subprocess.run(ray_cli + ["start", "--head", f"--port={port}", "--include-dashboard=false", *node],
                              env=env, capture_output=True, text=True, timeout=300)
        assert head.returncode == 0, head.stderr[-2000:]
        worker = subprocess.run(ray_cli + ["start", f"--address={address}", *node],
                                env=env, capture_output=True, text=True, timeout=300)
        assert worker.returncode == 0, worker.stderr[-2000:]
        sweep = sweep_file(tmp_path, ["gradient", "gradcam"])
        done = subprocess.run(visum("sweep", sweep, "--out", tmp_path / "s", "--engine", "ray", "--address", address,
                                    "--cache-dir", tmp_path / "shared-cache"), env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr
        assert "ray: 2 cells on 2 CPUs" in done.stderr  # the second node joined: one CPU on each
        ours = cell_manifests(tmp_path / "s")
        assert ours == {k: v for k, v in local_cells[1].items() if k in ours} and len(ours) == 2
    finally:
        stop_ray()


def test_engine_ray_without_a_cluster_at_the_address_is_one_line(tmp_path, capsys):
    sweep = sweep_file(tmp_path, ["gradient"])
    code, _, err = run_cli(capsys, "sweep", sweep, "--out", tmp_path / "s", "--engine", "ray", "--address",
                           f"127.0.0.1:{_free_port()}")
    lines = [line for line in err.splitlines() if line.startswith("visum: error")]
    assert code == 2 and len(lines) == 1 and "could not start or reach the Ray cluster at" in lines[0], err


def test_run_with_engine_ray_gives_the_local_runs_manifest(tmp_path):
    """`visum run --engine ray` computes the saliency batches and matches the pairs as Ray tasks; what it
    finds is the local engine's."""
    common = ["run", "--benchmark-images", 8, "--batch-size", 4, "--saliency", "gradient", "--seed", 2]
    ours = subprocess.run(visum(*common, "--engine", "ray", "--out", tmp_path / "ray", "--cache-dir", tmp_path / "c1"),
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert ours.returncode == 0, ours.stderr
    assert "ray: saliency batches as tasks of" in ours.stderr, ours.stderr
    theirs = subprocess.run(visum(*common, "-q", "--out", tmp_path / "local", "--cache-dir", tmp_path / "c2"), env=ENV,
                            capture_output=True, text=True, timeout=900)
    assert theirs.returncode == 0, theirs.stderr
    assert manifest_without_timings(tmp_path / "ray") == manifest_without_timings(tmp_path / "local")
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text())["summaries"]


def test_run_with_an_unknown_engine_is_one_line(tmp_path, capsys):
    from conftest import one_line_error

    assert "engine 'slurm'" in one_line_error(capsys, "run", "--engine", "slurm", "--out", tmp_path / "o")


def test_a_saliency_worker_killed_mid_batch_is_retried_from_its_checkpoint(parts_folder, tmp_path):
    """`visum masks --engine ray`: the Ray worker saves its crisp batch's state to the cache as it goes; when
    the worker is killed, Ray runs the batch again, the new worker picks the state up, and the masks are
    those of an uninterrupted local run, byte for byte."""
    import numpy as np
    import psutil

    images = tmp_path / "two"
    images.mkdir()
    for p in sorted(parts_folder.glob("*.png"))[:2]:
        shutil.copy(p, images / p.name)
    env = {**ENV, "OMP_NUM_THREADS": "1", "VISUM_CHECKPOINT_SECONDS": "0.5"}
    common = ["masks", "--saliency", "crisp", "--images", images, "--seed", "5"]
    ref = subprocess.run(visum(*common, "-q", "--out", tmp_path / "ref", "--cache-dir", tmp_path / "c0"),
                         env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr

    cache = tmp_path / "c1"
    saved = cache / "saliency-checkpoint"
    driver = subprocess.Popen(visum(*common, "--engine", "ray", "--out", tmp_path / "o", "--cache-dir", cache),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []
    try:
        started, seen = time.monotonic(), 0.0
        while driver.poll() is None and time.monotonic() - started < 600 and not killed:
            if saved.is_dir() and any(saved.glob("*/*.vcache")):
                seen = seen or time.monotonic()
                if time.monotonic() - seen > 2.0:  # a few checkpoints into the batch: kill the worker running it
                    for proc in psutil.process_iter(["cmdline"]):
                        if any("ray::_ray_batch" in part for part in proc.info["cmdline"] or []):
                            proc.kill()
                            killed.append(proc.pid)
            time.sleep(0.01)
        assert killed, "the batch ended before its worker could be killed"
        _, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
        stop_ray()
    assert driver.returncode == 0, err
    assert "picking a batch up where a stopped run left it (round " in err, err
    ours, theirs = sorted((tmp_path / "o" / "masks").glob("*.npy")), sorted((tmp_path / "ref" / "masks").glob("*.npy"))
    assert [p.name for p in ours] == [p.name for p in theirs] and len(ours) == 2
    for a, b in zip(ours, theirs):
        assert np.array_equal(np.load(a), np.load(b))
    assert not any(saved.glob("*/*.vcache")), "the finished batch's checkpoint is left behind"


def test_a_tasks_own_error_comes_back_as_itself_and_a_lost_worker_as_one_engine_line():
    from types import SimpleNamespace

    from visum.engines import ray_result
    from visum.errors import EngineError, InputError

    class RayError(Exception):
        pass

    def failing(exc):
        def get(ref):
            raise exc
        return SimpleNamespace(get=get, exceptions=SimpleNamespace(RayError=RayError))

    wrapped = RayError("ray::_ray_batch() failed")
    wrapped.cause = InputError("image a.png: not an image")
    with pytest.raises(InputError, match="a.png"):
        ray_result(failing(wrapped), None, "a batch")
    with pytest.raises(EngineError, match=r"--engine ray: a crisp batch failed \(RayError: worker died\)"):
        ray_result(failing(RayError("worker died")), None, "a crisp batch")
