"""Same inputs and --seed give the same manifest: computed twice from nothing, in separate cache folders,
with one matching process or several (issue 17)."""

from __future__ import annotations


from conftest import manifest_without_timings, run_cli


def test_two_uncached_runs_with_different_worker_counts_give_the_same_manifest(parts_folder, tmp_path, capsys):
    runs = []
    for k, workers in enumerate((1, 2)):
        out = tmp_path / f"run{k}"
        code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--seed", "5",
                               "--workers", workers, "--no-cache", "--cache-dir", tmp_path / f"cache{k}",
                               "--out", out, "-q")
        assert code == 0, err
        assert not (tmp_path / f"cache{k}" / "saliency").exists()  # nothing read or written: computed from nothing
        runs.append(manifest_without_timings(out))
    assert runs[0]["summaries"], "nothing to compare"
    a, b = runs
    a["config"].pop("workers"), b["config"].pop("workers")
    assert a == b
