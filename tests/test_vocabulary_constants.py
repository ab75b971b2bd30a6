"""The method's constants are typed once, in lce/vocabulary.py: the modules that use them, the command line's
defaults and the SQL that orders categories take them from there, and the module itself loads nothing heavy."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

from lce.cli.ingest import ingest
from lce.dissect import memory, threshold, uncertainty
from lce.dissect.threshold import Histogram, ThresholdEstimator
from lce.vocabulary import CATEGORIES, DEFAULT_BLOCKS, DEFAULT_REPLICATES, HISTOGRAM_BINS, TOP_IMAGES

REPO = Path(__file__).resolve().parents[1]
# A category order spelled in SQL: ARRAY['object', 'part', ...].
SQL_ORDER = re.compile(r"ARRAY\[\s*('[a-z]+'(?:\s*,\s*'[a-z]+')*)\s*\]")


def test_the_vocabulary_loads_without_torch_or_numpy():
    loaded = subprocess.run([sys.executable, "-c", "import sys, lce.vocabulary; print(sorted(sys.modules))"],
                            capture_output=True, text=True, check=True).stdout
    assert not {"torch", "numpy", "sqlalchemy"} & set(eval(loaded))


def test_the_constants_keep_their_published_values():
    assert (TOP_IMAGES, HISTOGRAM_BINS, DEFAULT_BLOCKS, DEFAULT_REPLICATES) == (10, 8192, 100, 1000)
    assert CATEGORIES == ("object", "part", "material", "color", "scene", "texture")


def test_the_method_and_the_memory_plan_take_the_vocabulary_values():
    assert Histogram(2, 0.01).bins == HISTOGRAM_BINS and ThresholdEstimator(2, 0.01).bins == HISTOGRAM_BINS
    assert memory.HISTOGRAM_BINS is HISTOGRAM_BINS and memory.TOP_IMAGES is TOP_IMAGES
    assert memory.values_read_by_quantile is threshold.values_read_by_quantile
    assert (uncertainty.DEFAULT_BLOCKS, uncertainty.DEFAULT_REPLICATES) == (DEFAULT_BLOCKS, DEFAULT_REPLICATES)


def test_lce_ingest_defaults_to_the_bootstrap_defaults():
    defaults = {name: parameter.default.default for name, parameter in inspect.signature(ingest).parameters.items()}
    assert (defaults["replicates"], defaults["blocks"]) == (DEFAULT_REPLICATES, DEFAULT_BLOCKS)


def test_every_category_order_in_sql_is_the_vocabulary_order():
    orders = {path.relative_to(REPO).as_posix(): [tuple(re.findall(r"'([a-z]+)'", match))
                                                  for match in SQL_ORDER.findall(path.read_text())]
              for path in sorted((REPO / "sql").rglob("*.sql"))}
    spelled = {path: found for path, found in orders.items() if found}
    # The two queries that list categories in lce's order (compare, report); a new one is checked as it comes.
    assert {"sql/queries/compare_categories.sql", "sql/queries/report_profiles.sql"} <= set(spelled)
    assert all(order == CATEGORIES for found in spelled.values() for order in found), spelled


def test_the_vocabulary_imports_only_lce_errors():
    imports = re.findall(r"^(?:from|import) (\S+)", (REPO / "lce" / "vocabulary.py").read_text(), re.MULTILINE)
    assert set(imports) <= {"__future__", "dataclasses", "lce.errors"}
