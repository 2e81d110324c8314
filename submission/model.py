"""Codabench submission of the blood-cell notebook suite.

The platform unzips this folder, imports this file, calls `Model()` and then `predict(X)` with X a
NumPy uint8 array (N, 96, 96, 3), RGB, 0-255 (float 0-255 is accepted too). `predict` returns a
NumPy array of N class indices (0-7), not one-hot.

Everything is loaded from this file's own folder, never from the working directory:
  submission.json           which models, which test-time-augmentation views, the batch size
  <name>.json               how to rebuild each model's architecture
  <name>.weights.h5         its weights (rebuilding + weights works across Keras versions,
                            unlike a .keras file saved by a newer Keras)
  bloodcell_models.py       the suite's keras-only model builders (utils/models/builders.py)
  bloodcell_scratch_nets.py the nets trained from scratch that those build (utils/models/scratch_nets.py)
  bloodcell_registry.py     the model kinds and their defaults that both read (utils/models/registry.py)
  bloodcell_tta.py          the suite's NumPy test-time-augmentation views (utils/evaluation/tta.py)
It imports only numpy, keras (on TensorFlow) and those four files.
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import bloodcell_models  # noqa: E402
import bloodcell_tta  # noqa: E402


class Model:
    def __init__(self):
        with open(os.path.join(HERE, "submission.json")) as handle:
            self.config = json.load(handle)
        self.members = [bloodcell_models.load_model(HERE, member["name"]) for member in self.config["members"]]
        self.views = bloodcell_tta.check_views(self.config.get("tta_views", ["identity"]))
        self.batch_size = int(self.config.get("batch_size", 64))

    def predict_proba(self, X):
        """Mean class probabilities (N, 8) over the ensemble members and the TTA views."""
        X = np.asarray(X)
        if X.ndim != 4 or X.shape[1:] != (96, 96, 3):
            raise ValueError(f"predict expects images of shape (N, 96, 96, 3), got {X.shape}.")
        return bloodcell_tta.predict_probabilities(self.members, X, self.views, self.batch_size)

    def predict(self, X):
        """Class indices (N,) as int64."""
        if len(X) == 0:
            return np.zeros((0,), dtype=np.int64)
        return np.asarray(self.predict_proba(X).argmax(axis=1), dtype=np.int64)
