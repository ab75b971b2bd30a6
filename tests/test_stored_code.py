"""No code from stored data: a run's settings name its architecture, and whoever could write runs (a shared owner
login, `lce sql --write`, a --resume file) wrote them; `lce report` rebuilds a package.module:function from them only
when the user names it (--allow-arch), and no --arch import searches the current directory.

    lce report --out DIR                              # a stored markermod:build run: no strips, no import, a note
    lce report --out DIR --allow-arch markermod:build # drawn
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from lce.errors import LceError
from lce.models.build import ArchitectureNotAllowed, ModelSpec, build_model


@pytest.fixture
def markermod(tmp_path, monkeypatch):
    """markermod.py in tmp_path/code, which is both the current directory and on sys.path; importing it writes
    the marker file (returned), calling build() returns a resnet18."""
    code = tmp_path / "code"
    code.mkdir()
    marker = tmp_path / "imported.marker"
    (code / "markermod.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")

        def build():
            import torchvision
            return torchvision.models.resnet18(weights=None)
    """))
    monkeypatch.chdir(code)
    monkeypatch.delitem(sys.modules, "markermod", raising=False)
    yield code, marker
    sys.modules.pop("markermod", None)


def test_arch_does_not_import_from_the_current_directory(markermod, monkeypatch):
    code, marker = markermod
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(code))])
    with pytest.raises(LceError, match=r"module 'markermod' is not importable from PYTHONPATH .*PYTHONPATH=\. lce"):
        build_model("markermod:build", random_init=True)
    assert not marker.exists()
    monkeypatch.syspath_prepend(code)  # PYTHONPATH=. : asked for, so imported
    assert isinstance(build_model("markermod:build", random_init=True).module, torch.nn.Module)
    assert marker.read_text() == "imported"


def test_recorded_settings_name_no_function_unless_it_is_allowed(markermod, monkeypatch):
    code, marker = markermod
    monkeypatch.syspath_prepend(code)
    settings = {"architecture": "markermod:build", "random_init": True, "seed": 1}
    with pytest.raises(ArchitectureNotAllowed, match=r"--allow-arch markermod:build"):
        ModelSpec.recorded(settings)
    with pytest.raises(ArchitectureNotAllowed):
        ModelSpec.recorded(settings, allowed=("markermod:other", "resnet18"))
    assert not marker.exists()
    for architecture in ("resnet18", "timm:resnet18", "hf:/nowhere"):  # built (or refused) later, never code
        assert ModelSpec.recorded({**settings, "architecture": architecture}).architecture == architecture
    # A zoo entry builds its own architecture, whatever the stored one says.
    assert ModelSpec.recorded({**settings, "zoo": "random"}).zoo == "random"
    spec = ModelSpec.recorded(settings, allowed=("markermod:build",))
    assert isinstance(spec.build().module, torch.nn.Module) and marker.exists()


@pytest.fixture
def probe(cli, tmp_path, monkeypatch, synthetic_probe):
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    path = synthetic_probe(tmp_path / "probe", images=10, size=64, seed=2)
    assert cli("probe", "add", "synth", path).exit_code == 0
    return path


def test_report_runs_no_code_that_a_stored_run_names(cli, probe, markermod, tmp_path, monkeypatch):
    code, marker = markermod
    monkeypatch.syspath_prepend(code)  # importable, and the current directory: only the rule stops the import
    # Typed by the user, --arch package.module:function runs (and the run records it).
    stored = cli("ingest", "evil", "--probe", "synth", "--arch", "markermod:build", "--random-init", "--seed", "1",
                 "--batch-size", "8")
    assert stored.exit_code == 0, stored.output
    assert marker.exists()
    marker.unlink()
    sys.modules.pop("markermod")

    report = cli("report", "--out", tmp_path / "report", "--units", "2", "--device", "cpu")
    assert report.exit_code == 0, report.output
    assert not marker.exists()  # nothing imported
    assert "markermod" not in sys.modules
    assert (tmp_path / "report" / "index.html").is_file()
    said = " ".join(report.stderr.split())
    assert "is a function of Python code that the stored run names" in said and "--allow-arch markermod:build" in said
    page = next((tmp_path / "report" / "runs").glob("run-*.html")).read_text()
    assert "--allow-arch markermod:build" in page
    assert not list((tmp_path / "report" / "strips").glob("run-*/*.jpg"))

    allowed = cli("report", "--out", tmp_path / "allowed", "--units", "2", "--device", "cpu",
                  "--allow-arch", "markermod:build")
    assert allowed.exit_code == 0, allowed.output
    assert marker.read_text() == "imported"
    assert len(list((tmp_path / "allowed" / "strips").glob("run-*/unit-*.jpg"))) == 2


@pytest.mark.parametrize("settings, said", [
    ({"architecture": "resnet18", "zoo": 5, "random_init": True}, "zoo = 5, not a str"),  # was AttributeError
    ({"architecture": "resnet18", "random_init": True, "seed": "x"}, 'seed = "x", not a int'),  # was RuntimeError
    ({"architecture": "resnet18", "checkpoint": 5}, "checkpoint = 5, not a str"),  # was TypeError
    ({"architecture": ["resnet18"], "random_init": True}, "architecture = [\"resnet18\"]"),  # was AttributeError
    ({"architecture": "resnet18", "random_init": "false"}, 'random_init = "false", not a bool'),  # was: built random
    ({"architecture": "resnet18", "random_init": True, "mean": [1, 2], "std": "abc"}, "std = \"abc\""),  # was built
    ({"architecture": "resnet18", "random_init": True, "mean": [0.5, 0.5, 0.5], "std": [1, 0, 1]}, "std not 0"),
    ({"architecture": "resnet18", "random_init": True, "model_image_size": 10 ** 9}, "not a size in pixels"),
])
def test_stored_settings_of_the_wrong_kind_are_one_message(settings, said):
    """Stored settings are anyone's JSON: a wrong kind is an LceError (lce report: "no strips", with the reason)."""
    with pytest.raises(LceError, match="the run's settings give") as refused:
        ModelSpec.recorded(settings).build()
    assert said in str(refused.value)


def test_stored_settings_as_lce_records_them_still_build():
    spec = ModelSpec.recorded({"architecture": "resnet18", "random_init": True, "seed": 3, "zoo": None,
                               "checkpoint": None, "model_image_size": 224, "mean": [0.5, 0.5, 0.5],
                               "std": [0.25, 0.25, 0.25], "source": "torchvision"})
    assert (spec.seed, spec.image_size, spec.normalization.std) == (3, 224, (0.25, 0.25, 0.25))
    assert ModelSpec.recorded({"architecture": "x", "zoo": "MoCo-v2", "random_init": True}).build().architecture \
        == "resnet50"
