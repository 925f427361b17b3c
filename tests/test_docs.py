"""Registry-derived files must be fresh, and the published schema must agree with the checker."""

import json

import jsonschema
import pytest
import yaml

from compiler import docgen
from compiler.registry import REGISTRY
from compiler.schema import spec_schema
from compiler.zoo import bundled


def test_schema_file_is_fresh():
    assert docgen.SCHEMA_FILE.read_text() == docgen.schema_text(), "run `make docs`"


def test_layer_table_in_docs_is_fresh():
    current = docgen.DOC_FILE.read_text()
    assert current == docgen.doc_text(current), "run `make docs`"


@pytest.mark.slow  # the whole library again; `check` by name keeps it in the quick loop
def test_readme_library_table_is_current():
    current = docgen.README_FILE.read_text()
    assert current == docgen.readme_text(current), "run `make docs`"



def test_docs_list_every_layer_type():
    text = docgen.DOC_FILE.read_text()
    for name in REGISTRY:
        assert f"| `{name}` |" in text


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(spec_schema())


@pytest.mark.parametrize("path", bundled(), ids=lambda p: p.stem)
def test_bundled_specs_validate_against_the_published_schema(path):
    """What editors check (the detailed schema) accepts every bundled spec."""
    doc = yaml.safe_load(path.read_text())
    jsonschema.Draft202012Validator(json.loads(docgen.SCHEMA_FILE.read_text())).validate(doc)


@pytest.mark.parametrize("item", [
    {"conv": {"filters": 3, "kernel": 3, "strid": 2}},   # unknown argument
    {"conv": {"filters": 0, "kernel": 3}},                # out of range
    {"maxpool": {"kernel": "big"}},                       # wrong type
    {"dropout": 1.5},                                     # shorthand out of range
])
def test_published_schema_rejects_bad_arguments(item):
    doc = {"input": [3, 8, 8], "layers": [item]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(spec_schema()).validate(doc)
