"""The method's vocabulary in one place: each variant's properties as docs/method.md section 1 states them, lookups
that name the known variants, and everything else (settings, tally, schema, migrated database, importers, --help)
taking the registry's values. Every registered variant also goes through the plain reference dissection
(tests/test_dissect_reference.py, parametrized over the registry)."""

import re

import pytest
from sqlalchemy import CheckConstraint, text

from lce.db import schema
from lce import vocabulary as variants
from lce.dissect.engine import DissectSettings
from lce.dissect.tally import Tally
from lce.vocabulary import CATEGORIES, CLAMPED, IOU_CUTOFF, NAMES, VARIANTS, ZERO_PADDED, variant
from lce.errors import LceError
from lce.importers.dissect_csv import read_dissect_csv
from tests.conftest import Cli


def test_the_published_variants_are_registered_as_method_md_states_them():
    netdissect, dissect = variant("netdissect"), variant("dissect")
    assert NAMES == ("netdissect", "dissect") and variants.DEFAULT_VARIANT == "dissect" and IOU_CUTOFF == 0.04
    assert (netdissect.quantile, netdissect.threshold_upsampled, netdissect.upsampling) == (0.005, False, CLAMPED)
    assert (dissect.quantile, dissect.threshold_upsampled, dissect.upsampling) == (0.01, True, ZERO_PADDED)
    assert netdissect.activation_per_category and netdissect.label_per_category
    assert not dissect.activation_per_category and not dissect.label_per_category
    # Broden 224: 224-pixel images, 112 x 112 label maps.
    assert (netdissect.seg_size(224, 112), dissect.seg_size(224, 112)) == (112, 56)
    assert (netdissect.seg_size_rule, dissect.seg_size_rule) == ("the probe's own", "56 for 224-px images")
    assert (netdissect.summary, dissect.summary) == ("top-0.5% quantile, IoU cut-off 0.04",
                                                     "top-1% quantile, IoU cut-off 0.04")
    assert all(spec.iou_cutoff == IOU_CUTOFF and spec.upsampling in variants.GRIDS and spec.description
               for spec in VARIANTS)


def test_variants_are_frozen_and_a_variant_is_its_own_lookup():
    spec = variant("dissect")
    with pytest.raises(AttributeError):
        spec.quantile = 0.5
    assert variant(spec) is spec


@pytest.mark.parametrize("lookup", [variant, lambda name: Tally(2, ["object"], 3, name)])
def test_an_unknown_variant_is_an_error_naming_the_known_ones(lookup):
    with pytest.raises(LceError, match=r"Unknown variant 'gradcam'; lce knows netdissect, dissect\."):
        lookup("gradcam")
    # Settings name the option that lce ingest takes.
    with pytest.raises(LceError, match=r"--variant must be one of netdissect, dissect, not 'gradcam'\."):
        DissectSettings.for_variant("gradcam")


@pytest.mark.parametrize("spec", VARIANTS, ids=NAMES)
def test_settings_take_the_quantile_and_segmentation_size_of_their_variant(spec):
    settings = DissectSettings.for_variant(spec.name)
    assert settings.spec is spec
    assert (settings.quantile, settings.iou_threshold) == (spec.quantile, spec.iou_cutoff)
    assert settings.seg_size_for(224, 112) == spec.seg_size(224, 112)
    assert DissectSettings.for_variant(spec.name, quantile=0.02, seg_size=30).seg_size_for(224, 112) == 30
    assert DissectSettings.for_variant(spec.name, quantile=0.02).quantile == 0.02
    assert DissectSettings().spec is variant(variants.DEFAULT_VARIANT)


@pytest.mark.parametrize("spec", VARIANTS, ids=NAMES)
def test_the_tally_counts_activation_per_category_as_its_variant_says(spec):
    tally = Tally(3, ["object", "part"], 5, spec.name)
    assert tally.activation.shape == ((3, 2) if spec.activation_per_category else (3,))


def _check(table: str, name: str) -> str:
    (constraint,) = [c for c in schema.Base.metadata.tables[table].constraints
                     if isinstance(c, CheckConstraint) and c.name == name]
    return str(constraint.sqltext)


def test_the_schema_checks_list_exactly_the_registered_variants_and_categories():
    # The text the first migration created (0001_tables.py), character for character.
    assert _check("run", "ck_run_variant") == "variant IN ('netdissect', 'dissect')"
    assert re.findall(r"'([^']+)'", _check("run", "ck_run_variant")) == list(NAMES)
    for table, name in (("concept", "ck_concept_category"), ("concept", "ck_concept_primary_category")):
        assert re.findall(r"'([^']+)'", _check(table, name)) == list(CATEGORIES)
    assert schema.Base.metadata.tables["run"].c.variant.comment == "'netdissect' or 'dissect' (method.md section 1)"


def test_the_migrated_database_accepts_exactly_the_registered_variants(engine):
    with engine.connect() as conn:
        checks = dict(conn.execute(text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname IN ('ck_run_variant', 'ck_concept_category')")).all())
    assert re.findall(r"'([^']+)'::text", checks["ck_run_variant"]) == list(NAMES)
    assert re.findall(r"'([^']+)'::text", checks["ck_concept_category"]) == list(CATEGORIES)


def test_the_synthetic_probe_writes_the_categories_in_brodens_column_order():
    from lce.probe.synth import CATEGORIES as COLUMNS

    assert COLUMNS == ("color", "object", "part", "material", "scene", "texture")
    assert sorted(COLUMNS) == sorted(CATEGORIES)


def test_an_imported_dissect_run_records_the_registrys_quantile_and_cut_off(tmp_path):
    csv = tmp_path / "units.csv"
    csv.write_text("name,unit,iou,label,category\nm,0,0.1,sky,object\n")
    (record,) = read_dissect_csv(csv, layer="layer4", probe="p")
    dissect = variant("dissect")
    assert (record.variant, record.quantile, record.iou_threshold) == (dissect.name, dissect.quantile,
                                                                       dissect.iou_cutoff)


def test_help_lists_every_registered_variant():
    ingest = Cli()("ingest", "--help").stdout
    for spec in VARIANTS:
        assert spec.name in ingest and spec.description in ingest
        assert f"{spec.quantile:g} {spec.name}" in ingest and f"{spec.seg_size_rule} with {spec.name}" in ingest
    for command in (("embed",), ("compare",)):
        assert variants.one_of() in Cli()(*command, "--help").stdout
    assert variant("netdissect").summary in Cli()("import", "netdissect-csv", "--help").stdout
    assert variant("dissect").summary in Cli()("import", "dissect-csv", "--help").stdout
