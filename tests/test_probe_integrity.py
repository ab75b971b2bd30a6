"""Probe integrity: the decode cache follows the label PNGs (manifest), truncated files are named at `lce probe add`
or `lce ingest` without a traceback, and two adds of one probe at once store one row."""

import os
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import text

from lce.probe.broden import Broden, read_label_png
from lce.probe.cache import DecodeCache
from tests.test_probe_broden import label_png, write_tiny


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def synth(cli, tmp_path, home, synthetic_probe):
    """A 24-image, 64-px synthetic probe (not yet added)."""
    return synthetic_probe(tmp_path / "probe", images=24, size=64, seed=3)


def counts(engine, *tables):
    with engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in tables)


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])  # the header survives: only decoding finds it


def test_a_changed_label_png_gives_a_new_cache_with_the_new_labels(tmp_path):
    root = tmp_path / "tiny"
    write_tiny(root)
    probe = Broden.open(root)
    old = DecodeCache.build(probe, tmp_path / "cache")
    assert old.built and old.labels_of(0).pixel["object"][0][0, 1] == 3
    png = root / "images" / "0_object.png"
    label_png(png, np.full((4, 4), 2))  # another valid label everywhere
    for trust_stat in (False, True):  # hashing every file, or only those whose size or mtime changed
        new = DecodeCache.build(Broden.open(root), tmp_path / "cache", trust_stat=trust_stat)
        assert new.directory != old.directory
        assert new.labels_of(0).pixel["object"][0].tolist() == np.full((4, 4), 2).tolist()
    assert new.built is False  # the second call found the cache the first one built
    # The old cache still holds the old labels, under its own key; nothing reads it for this probe any more.
    assert DecodeCache.load(old.directory).labels_of(0).pixel["object"][0][0, 1] == 3
    assert DecodeCache.open(Broden.open(root), tmp_path / "cache").directory == new.directory


def test_a_touched_label_png_with_the_same_bytes_keeps_its_cache(tmp_path):
    root = tmp_path / "tiny"
    write_tiny(root)
    cache = DecodeCache.build(Broden.open(root), tmp_path / "cache")
    png = root / "images" / "1_color.png"
    os.utime(png, ns=(png.stat().st_atime_ns, png.stat().st_mtime_ns + 5_000_000_000))
    opened = DecodeCache.open(Broden.open(root), tmp_path / "cache")
    assert opened.directory == cache.directory
    entry = {e.path: e for e in opened.manifest.entries}["images/1_color.png"]
    assert entry.mtime_ns == png.stat().st_mtime_ns  # the manifest now has the new mtime: the next stat matches


def test_ingest_refuses_a_label_png_changed_after_add_and_add_rebuilds_the_cache(cli, engine, synth, home):
    assert cli("probe", "add", "synth", synth).exit_code == 0
    png = synth / "images" / "synth" / "00004_object.png"
    other = synth / "images" / "synth" / "00005_object.png"
    png.write_bytes(other.read_bytes())  # valid, but other labels than the cache holds
    result = cli("ingest", "r18", "--probe", "synth", "--arch", "resnet18", "--random-init", "--batch-size", "8")
    assert result.exit_code == 1, result.output
    assert "1 file(s) of the probe at" in result.stderr and "images/synth/00004_object.png" in result.stderr
    assert f"lce probe add synth {synth}" in result.stderr and "Traceback" not in result.stderr
    assert counts(engine, "run", "unit") == (0, 0)
    again = cli("probe", "add", "synth", synth)
    assert again.exit_code == 0, again.output
    assert "Already stored, unchanged" in again.stdout and " built (" in again.stdout
    probe = Broden.open(synth)
    cache = DecodeCache.open(probe, home / "cache")
    position = cache.positions(probe)[4]
    assert cache.labels_of(position).pixel["object"][0].tolist() == read_label_png(other).tolist()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_truncated_jpeg_stops_probe_add_naming_it_and_its_line(cli, engine, synth, home, workers):
    jpeg = synth / "images" / "synth" / "00007.jpg"
    truncate(jpeg)
    assert cli("probe", "check", synth).exit_code == 0  # headers only: it looks fine
    result = cli("probe", "add", "synth", synth, "--workers", workers)
    assert result.exit_code == 1, result.output
    assert f"{jpeg} (index.csv line 9) cannot be decoded (image file is truncated" in result.stderr
    assert "Traceback" not in result.stderr
    assert counts(engine, "probe", "concept") == (0, 0)
    assert not list((home / "cache").glob("*/index.npz"))


def test_a_truncated_label_png_stops_probe_add_naming_it_and_its_line(cli, engine, synth, home):
    png = synth / "images" / "synth" / "00002_color.png"
    truncate(png)
    result = cli("probe", "add", "synth", synth)
    assert result.exit_code == 1, result.output
    assert f"{png} cannot be decoded (" in result.stderr and "index.csv line 4)" in result.stderr
    assert counts(engine, "probe", "concept") == (0, 0)


def test_fast_skips_decoding_the_images_and_says_so(cli, engine, synth, home):
    truncate(synth / "images" / "synth" / "00007.jpg")
    assert "--fast" in cli("probe", "add", "--help").stdout
    result = cli("probe", "add", "synth", synth, "--fast")
    assert result.exit_code == 0, result.output
    assert "Stored probe 'synth'" in result.stdout
    assert "--fast: skipped decoding the images" in result.stdout
    assert counts(engine, "probe") == (1,)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_jpeg_truncated_after_add_is_one_clean_ingest_error(cli, engine, synth, home, workers):
    assert cli("probe", "add", "synth", synth).exit_code == 0
    jpeg = synth / "images" / "synth" / "00007.jpg"
    truncate(jpeg)
    result = cli("ingest", "r18", "--probe", "synth", "--arch", "resnet18", "--random-init", "--batch-size", "8",
                 "--workers", workers)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().startswith(f"error: {jpeg} (index.csv line 9) cannot be read (image file is truncated")
    assert "Traceback" not in result.stderr and "Caught" not in result.stderr and "worker" not in result.stderr
    assert counts(engine, "run", "model", "unit") == (0, 0, 0)


def test_two_adds_of_one_probe_at_once_both_exit_cleanly_and_store_one_row(engine, synth, database):
    env = {**os.environ, "LCE_DATABASE_URL": database, "COLUMNS": "200"}
    command = [sys.executable, "-m", "lce", "probe", "add", "synth", str(synth)]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert all("Traceback" not in err for _, err in outputs)
    assert sorted(out.split(" probe ")[0] for out, _ in outputs) == ["Already stored, unchanged:", "Stored"]
    assert counts(engine, "probe") == (1,)
