"""`visum parts generate|train` and the experiments' class-folder input, run as a user runs them (issue 17)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli


def test_parts_generate_writes_images_and_ground_truth_for_the_classes_asked(tmp_path, capsys):
    from visum.data.parts import CLASS_NAMES

    code, out, err = run_cli(capsys, "parts", "generate", tmp_path / "g", "--n", "3", "--class", "0", "--class",
                             CLASS_NAMES[1], "--seed", "4")
    assert code == 0, err
    images = sorted(p for p in (tmp_path / "g").iterdir() if p.is_file())
    assert len(images) == 6 and "wrote 6 images" in out
    assert (tmp_path / "g" / "ground_truth").is_dir() and any((tmp_path / "g" / "ground_truth").iterdir())
    code, _, err = run_cli(capsys, "parts", "generate", tmp_path / "h", "--n", "3", "--class", "0", "--class",
                           CLASS_NAMES[1], "--seed", "4")
    assert code == 0, err
    for a in images:  # seeded: the same files again
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(tmp_path / "h" / a.name)))
    code, _, err = run_cli(capsys, "parts", "generate", tmp_path / "x", "--class", "unicorn")
    assert code == 2 and "unicorn" in err


def test_parts_train_writes_loadable_weights_and_metrics(tmp_path, capsys):
    from visum.models.parts_cnn import load_parts_model

    weights = tmp_path / "w" / "parts.pt"
    code, out, err = run_cli(capsys, "parts", "train", "--out", weights, "--epochs", "1", "--n-per-class", "8",
                             "--threads", "1", "--held-out", "10")
    assert code == 0, err
    metrics = json.loads(out)  # stdout is the metrics alone
    assert weights.is_file() and 0.0 <= float(metrics["held_out"]["accuracy"]) <= 1.0
    model = load_parts_model(weights)
    import torch

    x = torch.zeros(1, 3, model.preprocessing.input_size, model.preprocessing.input_size)
    assert torch.isfinite(model.module(x)).all()


def test_class_folders_label_split_and_stage_a_users_own_images(parts_folder, tmp_path):
    from visum.errors import InputError
    from visum.experiments.data import class_folders, split_folders, stage
    from visum.models.parts_cnn import load_parts_model
    from visum.data.parts import CLASS_NAMES

    model = load_parts_model()
    root = tmp_path / "mine"
    files = sorted(parts_folder.glob("*.png"))
    for k, name in enumerate(CLASS_NAMES[:2]):
        (root / name).mkdir(parents=True)
        for p in files[4 * k : 4 * k + 4]:
            shutil.copy(p, root / name / p.name)
    data = class_folders(root, model)
    assert len(data) == 8 and sorted(set(data.labels.tolist())) == [0, 1]
    assert all(data.paths[i].parent.name == CLASS_NAMES[data.labels[i]] for i in range(8))
    parts = split_folders(data, (0.5, 0.25, 0.25), seed=1)
    assert sorted(len(v) for v in parts.values()) == [2, 2, 4]
    assert split_folders(data, (0.5, 0.25, 0.25), seed=1)["test"].paths == parts["test"].paths  # seeded
    names = stage(parts["train"], tmp_path / "staged")
    assert len(names) == 4 and all((tmp_path / "staged" / n).is_file() for n in names)
    with pytest.raises(InputError, match="not a class"):
        (root / "unicorn").mkdir()
        class_folders(root, model)
