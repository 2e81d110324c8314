"""The one atomic-write helper."""

from __future__ import annotations

import numpy as np
import pytest

from utils.data import files


def test_atomic_write_replaces_the_file_and_keeps_the_suffix(tmp_path):
    seen = []

    def write(temporary):
        seen.append(temporary)
        np.savez_compressed(temporary, values=np.arange(3))  # NumPy adds ".npz" unless the name ends with it

    target = files.atomic_write(tmp_path / "deep" / "arrays.npz", write)
    assert target == tmp_path / "deep" / "arrays.npz"
    assert seen[0].endswith(".npz") and "/.tmp-" in seen[0]
    assert np.load(target)["values"].tolist() == [0, 1, 2]
    assert sorted(path.name for path in target.parent.iterdir()) == ["arrays.npz"]
    assert files.atomic_write(tmp_path / "model.weights.h5", lambda temporary: open(temporary, "w").close()).exists()


def test_a_failed_or_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = files.atomic_write_text(tmp_path / "run.json", "good\n")

    def half_write(temporary):
        with open(temporary, "w") as handle:
            handle.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, half_write)
    assert target.read_text() == "good\n"
    assert [path.name for path in tmp_path.iterdir()] == ["run.json"]
