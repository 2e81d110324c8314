"""Loads a submission zip the way the platform does and predicts; run as a standalone script.

    python utils/submission/platform_check.py --zip submission.zip --images images.npy --out result.npz

It imports nothing from this suite (only NumPy and what the zip brings), so it also runs in the
platform's environment (TensorFlow 2.17, Keras 3.4.1, NumPy 1.x). It calls `Model().predict(X)` as the platform does,
with every kind of input a caller may pass: the images as uint8 and as float32 (all of them), as float64 (the first
256), a batch of one image and a batch of none. It prints one JSON line:
{"ok": true, "load_seconds": ..., "images_per_second": ..., "peak_memory_gib": ..., ...} or
{"ok": false, "error": "..."}, and writes the predictions to --out.

Its folder is the first entry of the import path when it runs, so no module beside it may share a name with a
package that TensorFlow or Keras imports (a `packaging.py` here once shadowed PyPI's `packaging`).
"""

import argparse
import importlib.util
import inspect
import json
import os
import resource
import sys
import tempfile
import time
import zipfile


def peak_memory_gib():
    """This process's largest resident set in GiB, since it started.

    Linux's `VmHWM` belongs to the process's own memory map, which `exec` makes new. `ru_maxrss` does not: after
    `subprocess` starts a child with vfork and exec, it carries the parent's peak, so a check started from a large
    process (a test session holding models) would report that process's memory as its own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    # Elsewhere (macOS reports bytes, Linux KiB) the resource module is the only measure.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**3 if sys.platform == "darwin" else peak / 1024**2


def fail(message):
    print(json.dumps({"ok": False, "error": message}))
    sys.exit(1)


def check_predictions(predictions, count, what):
    import numpy as np

    if not isinstance(predictions, np.ndarray):
        fail(f"predict({what}) returned a {type(predictions).__name__}, not a NumPy array; return np.asarray(class_indices).")
    if predictions.ndim == 2 and predictions.shape == (count, 8):
        fail(f"predict({what}) returned shape {predictions.shape}, one-hot or probabilities; return class indices with .argmax(axis=1).")
    if predictions.shape != (count,):
        fail(f"predict({what}) returned shape {predictions.shape} but must return ({count},) class indices.")
    if not np.issubdtype(predictions.dtype, np.integer) and (
        not np.issubdtype(predictions.dtype, np.number) or not np.all(predictions == np.round(predictions))
    ):
        fail(f"predict({what}) returned {predictions.dtype} values that are not class indices; return integers 0-7.")
    if count and (predictions.min() < 0 or predictions.max() > 7):
        fail(f"predict({what}) returned classes outside 0-7 (from {predictions.min()} to {predictions.max()}).")
    return predictions.astype(np.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zip", required=True)
    parser.add_argument("--images", required=True, help=".npy of uint8 images (N, 96, 96, 3)")
    parser.add_argument("--out", required=True, help=".npz to write the predictions to")
    arguments = parser.parse_args()

    import numpy as np

    images = np.load(arguments.images, allow_pickle=False)
    unpacked = tempfile.mkdtemp(prefix="submission_")
    try:
        with zipfile.ZipFile(arguments.zip) as archive:
            archive.extractall(unpacked)
    except (zipfile.BadZipFile, OSError) as error:
        fail(f"{arguments.zip} is not a readable zip ({error}).")
    if not os.path.isfile(os.path.join(unpacked, "model.py")):
        inside = sorted(os.listdir(unpacked))[:8]
        fail(f"{arguments.zip} has no model.py at its root (it holds {inside}); put model.py and the weights at the top level.")

    # Like the platform: import from the unpacked folder while the working directory is elsewhere,
    # so a model that reads its weights from the working directory fails here too.
    os.chdir(tempfile.mkdtemp(prefix="cwd_"))
    sys.path.insert(0, unpacked)
    started = time.perf_counter()
    try:
        specification = importlib.util.spec_from_file_location("model", os.path.join(unpacked, "model.py"))
        module = importlib.util.module_from_spec(specification)
        sys.modules["model"] = module
        specification.loader.exec_module(module)
    except Exception as error:  # Whatever breaks the import is reported in one sentence.
        fail(f"importing model.py failed with {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    model_class = getattr(module, "Model", None)
    if not inspect.isclass(model_class):
        classes = [name for name, value in vars(module).items() if inspect.isclass(value) and value.__module__ == "model"]
        fail(f"model.py defines no class named Model (it defines {classes or 'no classes'}); the platform calls Model().")
    try:
        instance = model_class()
    except Exception as error:
        fail(f"Model() failed with {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    load_seconds = time.perf_counter() - started

    try:
        started = time.perf_counter()
        predictions = instance.predict(images)
        predict_seconds = time.perf_counter() - started
        predictions = check_predictions(predictions, len(images), "uint8 images")
        float_predictions = check_predictions(instance.predict(images.astype("float32")), len(images), "float images")
        double_predictions = check_predictions(instance.predict(images[:256].astype("float64")), len(images[:256]), "float64 images")
        if len(images):
            one = check_predictions(instance.predict(images[:1]), 1, "a batch of one image")
            if one[0] != predictions[0]:
                fail(f"predict of a batch of one image gave class {one[0]}, but {predictions[0]} for the same image in a batch.")
        check_predictions(instance.predict(images[:0]), 0, "a batch of no images")
    except SystemExit:
        raise
    except Exception as error:
        fail(f"predict failed with {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    np.savez(arguments.out, predictions=predictions, float_predictions=float_predictions)
    import keras

    print(
        json.dumps(
            {
                "ok": True,
                "load_seconds": load_seconds,
                "predict_seconds": predict_seconds,
                "images_per_second": len(images) / max(predict_seconds, 1e-9),
                "float_agreement": float((predictions == float_predictions).mean()) if len(images) else 1.0,
                "float64_agreement": float((predictions[:256] == double_predictions).mean()) if len(images) else 1.0,
                # The process's largest resident set (Linux reports KiB): the zip, the models and every view of a batch.
                "peak_memory_gib": peak_memory_gib(),
                "keras": keras.__version__,
                "backend": keras.backend.backend(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
