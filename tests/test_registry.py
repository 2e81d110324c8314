"""The registry of model kinds: every registered kind builds, saves its spec and rebuilds the same network from it,
and no other module of the suite sets a kind's default again."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from utils import config, models
from utils.models import registry
from utils.runner import parameters
from utils.training import recipe

# Tiny settings for each registered kind, so that every build takes a moment; a kind registered without an entry
# here fails `test_every_registered_kind_has_tiny_settings`.
TINY = {
    "baseline": {"filters": (4, 8), "dense_units": 8},
    "resnet": {"widths": (4, 8), "blocks": (1, 1)},
    "convnext": {"widths": (8, 16), "blocks": (1, 1)},
    "transfer": {"image_size": 32, "head_units": 8},
}
# Every kind rebuilds from its saved spec; the transfer kind with two backbones, a small one and the gpu profile's
# (tests/test_models.py builds every backbone of the gpu sweep at its size).
REBUILT_BACKBONES = ("MobileNetV2", "EfficientNetV2S")
CASES = [pytest.param(kind, None, id=kind) for kind in registry.SCRATCH_KINDS] + [
    pytest.param("transfer", backbone, id=backbone) for backbone in REBUILT_BACKBONES
]

# The modules that build models, hold a recipe or check a profile's model parameters: none may repeat a default.
GUARDED_MODULES = [
    config.REPO_ROOT / "utils" / "models" / "builders.py",
    config.REPO_ROOT / "utils" / "models" / "scratch_nets.py",
    config.REPO_ROOT / "utils" / "training" / "recipe.py",
    config.REPO_ROOT / "utils" / "runner" / "parameters.py",
]
# Names under which a module may hold a registered default (the recipe's BatchNorm momentum of the nets from scratch).
ALIASES = {"scratch_bn_momentum": "bn_momentum"}


def _images(count: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 96, 96, 3)).astype("float32")


def _structure(model, nested: bool = False) -> list[tuple]:
    """Every layer, nested models included, as (name, class, weight shapes); inside a nested keras.applications
    backbone the names Keras numbers per session (input_layer, input_layer_1, ...) are left out."""
    rows = []
    for layer in model.layers:
        rows.append((None if nested else layer.name, type(layer).__name__, [tuple(weight.shape) for weight in layer.weights]))
        if isinstance(layer, keras.Model):
            rows.extend(_structure(layer, nested=True))
    return rows


def test_every_registered_kind_has_tiny_settings_and_a_builder():
    assert set(TINY) == set(registry.KINDS)
    for entry in registry.KINDS.values():
        assert callable(entry.builder), f"kind {entry.name!r} has no builder attached"
        assert set(TINY[entry.name]) <= set(entry.defaults)


@pytest.mark.parametrize("kind, backbone", CASES)
def test_each_kind_rebuilds_from_its_saved_spec(kind, backbone, tmp_path, fresh_keras_session):
    settings = dict(TINY[kind], **({"backbone": backbone} if backbone else {}))
    spec = models.model_spec(kind, **settings)
    model = models.build_model(spec, seed=0)
    models.save_model(model, spec, tmp_path, "model")
    saved = json.loads((tmp_path / "model.json").read_text())
    assert saved == json.loads(json.dumps(spec))
    rebuilt = models.load_model(tmp_path, "model")
    assert _structure(rebuilt) == _structure(model)
    images = _images()
    np.testing.assert_array_equal(rebuilt.predict(images, verbose=0), model.predict(images, verbose=0))


def test_a_spec_without_its_settings_builds_the_registered_defaults(fresh_keras_session):
    minimal = models.build_model({"kind": "resnet", "widths": [4, 8], "blocks": [1, 1]}, seed=0)
    full = models.build_model(models.model_spec("resnet", widths=(4, 8), blocks=(1, 1)), seed=0)
    assert _structure(minimal) == _structure(full)
    assert minimal.get_layer("dropout").rate == registry.defaults("resnet")["dropout"]
    assert minimal.get_layer("stem_bn").momentum == registry.defaults("resnet")["bn_momentum"]


def test_a_spec_saved_by_earlier_runs_rebuilds_with_its_own_settings(fresh_keras_session):
    # The explicit keys of an older spec win over today's defaults (there: Keras' BatchNorm momentum, dropout 0.2).
    old = {
        "kind": "baseline",
        "input_size": 96,
        "num_classes": 8,
        "filters": [4, 8],
        "dropout": 0.2,
        "dense_units": 8,
        "bn_momentum": 0.99,
        "spec_version": 1,
        "recipe": {"model": "baseline"},
    }
    model = models.build_model(old, seed=0)
    assert model.get_layer("dropout").rate == 0.2
    assert model.get_layer("block1_bn").momentum == 0.99
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [4, 8]


def test_recipe_and_spec_defaults_come_from_the_registry():
    default = recipe.Recipe()
    assert default.dropout == registry.DROPOUT and default.scratch_bn_momentum == registry.BN_MOMENTUM
    assert tuple(default.filters) == registry.defaults("baseline")["filters"]
    assert tuple(default.widths) == registry.defaults("resnet")["widths"]
    assert default.head_units == registry.defaults("transfer")["head_units"]
    for name, entry in registry.KINDS.items():
        spec = models.model_spec(name)
        for key, value in entry.defaults.items():
            if key not in entry.omitted_when_default:
                assert spec[key] == (list(value) if isinstance(value, tuple) else value), (name, key)


def test_unknown_kinds_and_models_name_the_registered_ones():
    with pytest.raises(ValueError, match="registered kinds are 'baseline', 'resnet', 'convnext', 'transfer'"):
        models.model_spec("vit")
    with pytest.raises(ValueError, match="Model spec has unknown kind 'vit'; the registered kinds are"):
        models.build_model({"kind": "vit"})
    with pytest.raises(ValueError, match="Unknown model 'vit'; choose 'baseline', 'resnet', 'convnext' or a backbone: MobileNetV2"):
        recipe.Recipe(model="vit")
    with pytest.raises(ValueError, match="FINAL_RECIPE.model names unknown model 'vit'; choose 'baseline'"):
        parameters.check_parameters({"FINAL_RECIPE": {"model": "vit"}})
    with pytest.raises(ValueError, match="registered already"):
        registry.register("resnet", defaults={})


# --------------------------------------------------------------------------------------------
# No default set twice
# --------------------------------------------------------------------------------------------
def _literal(node) -> bool:
    """Whether `node` is a literal other than None (a number, text, or a tuple or list of them)."""
    try:
        return ast.literal_eval(node) is not None
    except ValueError:
        return False


def _default_name(name: str, names: set[str]) -> str | None:
    name = ALIASES.get(name.lower(), name.lower())
    return name if name in names else None


def repeated_defaults(source: str, names: set[str]) -> list[str]:
    """Where `source` sets one of the registered default `names` to a literal: a parameter's default, a class field or
    module constant (a `field(default_factory=lambda: ...)` included), a `.get(name, default)` or `.pop(name, default)`
    fallback, or a keyword argument of a call."""
    found = []

    def note(node, name, value):
        key = _default_name(name, names)
        if key is not None and _literal(value):
            found.append(f"line {node.lineno}: {name} = {ast.unparse(value)}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            positional = node.args.posonlyargs + node.args.args
            for argument, default in zip(positional[len(positional) - len(node.args.defaults) :], node.args.defaults):
                note(node, argument.arg, default)
            for argument, default in zip(node.args.kwonlyargs, node.args.kw_defaults):
                if default is not None:
                    note(node, argument.arg, default)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
                for keyword in value.keywords:
                    if keyword.arg == "default":
                        value = keyword.value
                    elif keyword.arg == "default_factory" and isinstance(keyword.value, ast.Lambda):
                        value = keyword.value.body
            for target in targets:
                if isinstance(target, ast.Name):
                    note(node, target.id, value)
        elif isinstance(node, ast.Call):
            attribute = getattr(node.func, "attr", None)
            key = node.args[0] if node.args else None
            if attribute in ("get", "pop", "setdefault") and len(node.args) == 2 and isinstance(getattr(key, "value", None), str):
                note(node, key.value, node.args[1])
            for keyword in node.keywords:
                if keyword.arg is not None:
                    note(node, keyword.arg, keyword.value)
    return found


def registered_names() -> set[str]:
    return {key for entry in registry.KINDS.values() for key in entry.defaults}


def test_the_scan_finds_every_way_of_setting_a_default_again():
    # Each line sets a registered default again; the scan must report all of them (and nothing for the last two).
    source = """
BN_MOMENTUM = 0.99
def build(widths=(8, 16), *, dropout: float = 0.2, seed=None):
    return spec.get("bn_momentum", 0.9), extra.pop("stem_stride", 2), make(head_units=256)
class Recipe:
    scratch_bn_momentum: float = 0.9
    filters: list = field(default_factory=lambda: [32, 64])
    image_size: int = None
    dense_units: int = registry.defaults("baseline")["dense_units"]
"""
    found = repeated_defaults(source, registered_names())
    names = sorted(line.split(": ", 1)[1].split(" = ")[0] for line in found)
    assert names == sorted(
        ["BN_MOMENTUM", "widths", "dropout", "bn_momentum", "stem_stride", "head_units", "scratch_bn_momentum", "filters"]
    ), found


@pytest.mark.parametrize("path", GUARDED_MODULES, ids=lambda path: path.name)
def test_no_other_module_sets_a_registered_default_again(path: Path):
    found = repeated_defaults(path.read_text(), registered_names())
    assert not found, (
        f"{path.relative_to(config.REPO_ROOT)} sets registered defaults again ({'; '.join(found)}); "
        "read them from utils.models.registry instead."
    )
