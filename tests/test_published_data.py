"""The published results are found through one setting (LCE_PUBLISHED_DATA, or a folder given), under either name of
the authors' per-unit file, and a missing one is one message saying where to download it and what to pass."""

import os
import subprocess
import sys

import pytest

from lce.published import AUTHORS_TASKS, AUTHORS_UNITS, PublishedDataMissing, locate, netdissect_result
from tests.conftest import REPO, published_file

DOWNLOAD = ("lce keeps no copy: download the Data/ folder of https://github.com/AhmadM-DL/Intermodel-Interpretation "
            "as DIR/mustapha2022/ and set LCE_PUBLISHED_DATA=DIR (scripts/demo --published DIR).")


def authors_folder(root, *names):
    folder = root / "mustapha2022"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text("name,unit,iou,label,category\n")
    return folder


@pytest.mark.parametrize("name", ["models_dissect_profiles.csv", "models_dissect_profiles_raw.csv"])
def test_the_authors_per_unit_file_is_found_under_either_name(tmp_path, monkeypatch, name):
    folder = authors_folder(tmp_path, name)
    monkeypatch.setenv("LCE_PUBLISHED_DATA", str(tmp_path))
    assert locate(AUTHORS_UNITS) == folder / name
    assert locate(AUTHORS_UNITS, tmp_path) == folder / name


def test_the_current_name_wins_when_both_are_there(tmp_path):
    folder = authors_folder(tmp_path, "models_dissect_profiles_raw.csv", "models_dissect_profiles.csv")
    assert locate(AUTHORS_UNITS, tmp_path) == folder / "models_dissect_profiles.csv"


def test_a_folder_given_wins_over_the_setting(tmp_path, monkeypatch):
    folder = authors_folder(tmp_path / "given", "models_performance_on_tasks.csv")
    monkeypatch.setenv("LCE_PUBLISHED_DATA", str(tmp_path / "elsewhere"))
    assert locate(AUTHORS_TASKS, tmp_path / "given") == folder / "models_performance_on_tasks.csv"


def test_an_unset_setting_is_one_message_saying_where_to_download_and_what_to_pass(monkeypatch):
    monkeypatch.delenv("LCE_PUBLISHED_DATA", raising=False)
    with pytest.raises(PublishedDataMissing) as missing:
        locate(AUTHORS_UNITS)
    assert str(missing.value) == (
        "The LCE paper's per-unit results cannot be found: LCE_PUBLISHED_DATA is not set. " + DOWNLOAD)


def test_a_folder_without_the_file_names_both_names_in_the_message(tmp_path, monkeypatch):
    authors_folder(tmp_path, "models_performance_on_tasks.csv")
    monkeypatch.setenv("LCE_PUBLISHED_DATA", str(tmp_path))
    with pytest.raises(PublishedDataMissing) as missing:
        locate(AUTHORS_UNITS)
    assert str(missing.value) == (
        f"The LCE paper's per-unit results cannot be found: {tmp_path}/mustapha2022 has no "
        f"models_dissect_profiles.csv (or models_dissect_profiles_raw.csv). " + DOWNLOAD)


def test_a_netdissect_result_says_where_clip_dissect_publishes_it(tmp_path):
    with pytest.raises(PublishedDataMissing, match=(
            r"^A published NetDissect result cannot be found: .*/netdissect has no resnet18_places365_layer4\.csv\. "
            r"lce keeps no copy: download the data/NetDissect_results/ folder of "
            r"https://github\.com/Trustworthy-ML-Lab/CLIP-dissect as DIR/netdissect/ and set LCE_PUBLISHED_DATA=DIR")):
        locate(netdissect_result("resnet18_places365_layer4.csv"), tmp_path)


def published_command(*args, setting=None):
    """`python -m lce.published ARGS` (what scripts/demo --published runs) with LCE_PUBLISHED_DATA as given."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("LCE_PUBLISHED_DATA", None)
    if setting is not None:
        environment["LCE_PUBLISHED_DATA"] = str(setting)
    return subprocess.run([sys.executable, "-m", "lce.published", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=60)


def test_the_demos_lookup_prints_the_file_from_a_folder_or_the_setting(tmp_path):
    folder = authors_folder(tmp_path, "models_dissect_profiles.csv")
    given = published_command(tmp_path)
    assert (given.returncode, given.stdout, given.stderr) == (0, f"{folder / 'models_dissect_profiles.csv'}\n", "")
    from_setting = published_command(setting=tmp_path)
    assert from_setting.stdout == given.stdout


def test_the_demos_lookup_without_the_data_is_the_one_message():
    done = published_command()
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("error: The LCE paper's per-unit results cannot be found: LCE_PUBLISHED_DATA is not set. "
                           + DOWNLOAD + "\n")


def test_tests_skip_with_the_message_only_when_the_setting_points_nowhere(tmp_path, monkeypatch):
    monkeypatch.delenv("LCE_PUBLISHED_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="LCE_PUBLISHED_DATA is not set"):
        published_file(AUTHORS_UNITS)
    monkeypatch.setenv("LCE_PUBLISHED_DATA", str(tmp_path / "absent"))
    with pytest.raises(pytest.skip.Exception, match="absent/mustapha2022 has no models_dissect_profiles.csv"):
        published_file(AUTHORS_UNITS)
    monkeypatch.setenv("LCE_PUBLISHED_DATA", str(tmp_path))  # there, but without the file: a failure
    with pytest.raises(pytest.fail.Exception, match="mustapha2022 has no models_dissect_profiles.csv"):
        published_file(AUTHORS_UNITS)


def test_a_setting_that_names_a_file_says_so_and_fails_the_tests(tmp_path, monkeypatch):
    """LCE_PUBLISHED_DATA set to the per-unit file itself (not the folder above mustapha2022/) is a mistake to
    fix, not data that is absent: the message says so, and the tests that need the data fail rather than skip."""
    folder = authors_folder(tmp_path, "models_dissect_profiles.csv")
    monkeypatch.setenv("LCE_PUBLISHED_DATA", str(folder / "models_dissect_profiles.csv"))
    with pytest.raises(PublishedDataMissing) as missing:
        locate(AUTHORS_UNITS)
    assert str(missing.value) == (
        f"The LCE paper's per-unit results cannot be found: {folder}/models_dissect_profiles.csv is a file, not the "
        "folder above mustapha2022/. " + DOWNLOAD)
    with pytest.raises(pytest.fail.Exception, match="is a file, not the folder above mustapha2022/"):
        published_file(AUTHORS_UNITS)
