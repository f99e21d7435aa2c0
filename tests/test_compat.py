"""keras-prompt's one module of keras / keras-hub internals and its version guard."""

import keras
import keras_hub
import pytest
from conftest import make_tiny_backbone

from keras_prompt import compat


def test_installed_stack_is_one_the_shims_were_written_for():
    compat.check_versions()


@pytest.mark.parametrize(
    "package, version", [("keras", "3.99.0"), ("keras_hub", "0.24.1")]
)
def test_unknown_release_fails_loudly_naming_the_shim(monkeypatch, package, version):
    module = keras if package == "keras" else keras_hub
    monkeypatch.setattr(module, "__version__", version)
    monkeypatch.delenv(compat.ALLOW_UNTESTED_ENV, raising=False)
    name = next(n for n, shim in compat.SHIMS.items() if shim.package == package)
    with pytest.raises(compat.UnsupportedVersionError, match=name) as raised:
        compat.require(name)
    assert version in str(raised.value) and compat.ALLOW_UNTESTED_ENV in str(
        raised.value
    )
    monkeypatch.setenv(compat.ALLOW_UNTESTED_ENV, "1")
    compat.require(name)


def test_sublayers_walks_the_whole_backbone():
    backbone = make_tiny_backbone()
    layers = list(compat.sublayers(backbone))
    assert layers[0] is backbone
    assert backbone.encoder_transformer_layers[0].self_attention in layers


def test_no_other_module_imports_keras_internals():
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    stats = runpy.run_path(str(root / "scripts" / "module_stats.py"))
    files = stats["python_files"](root / "keras_prompt")
    assert stats["private_imports"](files) == []
