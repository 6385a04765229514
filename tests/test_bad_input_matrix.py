"""The bad-input matrix of docs/reliability.md: every case ends in exit status 2 and one line naming the
culprit, never a traceback (issue 17). Each case is cheap: it fails before or right after the model loads."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` pixels and holds no pixels: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def world(parts_folder, tmp_path_factory):
    """Files the cases point at, made once."""
    root = tmp_path_factory.mktemp("matrix")

    def folder_with(name: str, make) -> Path:
        f = root / name
        shutil.copytree(parts_folder, f)
        make(f)
        return f

    w = {"root": root, "parts": parts_folder}
    w["text"] = folder_with("text", lambda f: (f / "notes.txt").write_text("not an image"))
    w["empty-file"] = folder_with("emptyfile", lambda f: (f / "blank.png").write_bytes(b""))
    first = sorted(parts_folder.glob("*.png"))[0]
    w["truncated"] = folder_with("truncated", lambda f: (f / "cut.png").write_bytes(first.read_bytes()[:300]))
    w["tiny"] = folder_with("tiny", lambda f: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f / "tiny.png"))
    w["bomb"] = folder_with("bomb", lambda f: png_header_only(f / "bomb.png", 20000, 20000))
    w["no-images"] = root / "none"
    w["no-images"].mkdir()
    w["a-file"] = root / "a-file.txt"
    w["a-file"].write_text("x")
    w["junk-pt"] = root / "junk.pt"
    w["junk-pt"].write_bytes(b"\x00junk" * 10)
    w["bad-toml"] = root / "bad.toml"
    w["bad-toml"].write_text("seed = [unclosed\n")
    w["unknown-key"] = root / "unknown.toml"
    w["unknown-key"].write_text("sede = 3\n")
    w["bad-value"] = root / "badvalue.toml"
    w["bad-value"].write_text("batch_size = 0\n")
    w["foreign-out"] = root / "thesis"
    w["foreign-out"].mkdir()
    (w["foreign-out"] / "chapter1.tex").write_text("precious")
    w["one"] = root / "one"
    w["one"].mkdir()
    shutil.copy(first, w["one"] / first.name)
    return w


# (id, arguments (world keys in braces), words the one line must contain)
CASES = [
    # images
    ("images-missing", "run --images {root}/nowhere", ["nowhere", "no such folder"]),
    ("images-is-a-file", "run --images {a-file}", ["a-file.txt", "not a folder"]),
    ("images-empty-folder", "run --images {no-images}", ["none", "no image files"]),
    ("images-text-file", "run --images {text}", ["notes.txt", "not an image"]),
    ("images-empty-file", "run --images {empty-file}", ["blank.png", "empty file"]),
    ("images-truncated", "run --images {truncated}", ["cut.png"]),
    ("images-too-small", "run --images {tiny}", ["tiny.png", "too small"]),
    ("images-bomb", "run --images {bomb}", ["bomb.png", "decompression"]),
    ("images-one-only", "run --images {one} --keep-misclassified", ["at least 3 images"]),
    ("masks-images-missing", "masks --saliency gradient --images {root}/nowhere", ["nowhere"]),
    # model
    ("model-unknown", "run --model resnet9000 --images {parts} --target 0", ["resnet9000"]),
    ("model-file-missing", "run --model {root}/gone.pt --images {parts} --target 0", ["gone.pt"]),
    ("model-file-junk", "run --model {junk-pt} --images {parts} --target 0", ["junk.pt"]),
    ("weights-missing", "run --model parts --weights {root}/w.pt --images {parts}", ["w.pt"]),
    ("classes-missing", "run --classes {root}/names.txt --images {parts}", ["names.txt"]),
    ("images-required", "run --model efficientnet-lite0 --target jeep", ["--images is required"]),
    ("target-required", "run --model efficientnet-lite0 --images {parts}", ["--target is required"]),
    # target
    ("target-unknown-name", "run --images {parts} --target zebra", ["zebra"]),
    ("target-out-of-range", "run --images {parts} --target 999", ["999"]),
    ("target-negative", "run --images {parts} --target -1", ["-1"]),
    # components and their options
    ("saliency-unknown", "run --saliency telepathy", ["telepathy", "gradient"]),
    ("proposer-unknown", "run --proposer nope", ["proposer", "nope"]),
    ("matcher-unknown", "run --matcher nope", ["matcher", "nope"]),
    ("clusterer-unknown", "run --clusterer nope", ["clusterer", "nope"]),
    ("scorer-unknown", "run --scorer nope", ["scorer", "nope"]),
    ("masks-saliency-unknown", "masks --saliency nope --images {parts}", ["nope"]),
    ("opt-malformed", "run --opt nonsense", ["--opt", "nonsense"]),
    ("opt-unknown-kind", "run --opt colour.x=1", ["colour"]),
    ("opt-unknown-key", "run --clusterer ap --opt clusterer.dampign=0.5", ["dampign"]),
    ("opt-out-of-range", "run --clusterer ap --opt clusterer.damping=7", ["damping"]),
    ("opt-wrong-type", "run --clusterer ap --opt clusterer.damping=abc", ["damping"]),
    # configuration files
    ("config-missing", "run --config {root}/gone.toml", ["gone.toml", "not found"]),
    ("config-is-a-folder", "run --config {root}", ["a folder"]),
    ("config-bad-toml", "run --config {bad-toml}", ["bad.toml", "TOML"]),
    ("config-unknown-key", "run --config {unknown-key}", ["unknown.toml", "sede"]),
    ("config-bad-value", "run --config {bad-value}", ["badvalue.toml", "batch_size"]),
    # numbers
    ("seed-huge", f"run --seed {2**70}", ["seed"]),
    ("seed-negative", "run --seed -1", ["seed"]),
    ("batch-size-zero", "run --batch-size 0", ["batch_size"]),
    ("workers-negative", "run --workers -1", ["workers"]),
    ("benchmark-images-one", "run --benchmark-images 1", ["benchmark_images"]),
    ("benchmark-images-two", "run --benchmark-images 2", ["at least 3 images"]),
    # outputs
    ("out-is-a-file", "run --out {a-file}", ["a-file.txt", "is a file"]),
    ("out-is-someone-elses-folder", "run --out {foreign-out}", ["thesis", "chapter1.tex"]),
    ("out-cannot-be-written", "run --out /proc/visum/out", ["/proc", "cannot write"]),
    ("masks-out-is-a-file", "masks --saliency gradient --images {parts} --out {a-file}", ["a-file.txt"]),
    # other commands
    ("plugins-unknown-kind", "plugins --kind colour", ["colour"]),
    ("schema-out-is-a-folder", "schema --out {root}", [str("matrix")]),
]


@pytest.mark.parametrize("case, command, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_culprit(world, tmp_path, capsys, case, command, words):
    if "/proc" in command and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    args = [a.format(**{k: str(v) for k, v in world.items()}) for a in command.split()]
    if "--out" not in args and args[0] in ("run", "masks"):
        args += ["--out", str(tmp_path / "out")]
    if args[0] in ("run", "masks"):
        args += ["--quiet", "--cache-dir", str(world["root"] / "cache")]
    code, out, err = run_cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("visum: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in err


def test_the_matrix_has_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
