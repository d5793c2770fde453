"""Gate the parser on IVOA's lyonetia ADQL validation queries (kept outside the repo).

Each query must parse or be rejected exactly as its ``valid`` attribute says. Functions
declared in the file (``<functions><function><form>``) are passed as the declared UDFs,
as lyonetia's own validator does; undeclared functions make a query invalid.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pachon.services.tap.adql import AdqlError, AdqlSyntaxError, parse


def _function_names(element: ET.Element) -> list[str]:
    names = []
    for form in element.findall("functions/function/form"):
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", form.text or "")
        if match:
            names.append(match.group(1))
    return names


def _load(folder: Path) -> list[tuple[str, str, bool, list[str]]]:
    cases = []
    for path in sorted(folder.glob("*.xml")):
        root = ET.parse(path).getroot()
        file_functions = _function_names(root)
        for query in root.iter("query"):
            adql = query.find("adql")
            assert adql is not None and adql.text is not None
            cases.append(
                (
                    f"{path.stem}:{query.get('uuid')}",
                    adql.text,
                    adql.get("valid", "false") == "true",
                    file_functions + _function_names(query),
                )
            )
    return cases


@pytest.fixture(scope="module")
def lyonetia(shared_dir: Path) -> list[tuple[str, str, bool, list[str]]]:
    folder = shared_dir / "testdata" / "adql-lyonetia"
    if not folder.is_dir():
        pytest.skip(f"lyonetia queries not found in {folder}")
    return _load(folder)


def test_every_lyonetia_query_matches_its_valid_flag(
    lyonetia: list[tuple[str, str, bool, list[str]]],
) -> None:
    mismatches = []
    for case_id, text, valid, functions in lyonetia:
        try:
            parse(text, udfs=functions)
            accepted, reason = True, ""
        except AdqlError as exc:
            accepted, reason = False, str(exc)
        if accepted != valid:
            mismatches.append(f"{case_id} valid={valid}: {reason or 'parsed'}\n{text.strip()[:200]}")
    total = len(lyonetia)
    print(f"lyonetia: {total - len(mismatches)}/{total} queries match their valid flag")
    assert total >= 200
    assert not mismatches, "\n\n".join(mismatches)


def test_rejections_carry_a_position(lyonetia: list[tuple[str, str, bool, list[str]]]) -> None:
    invalid = [(c, t, f) for c, t, v, f in lyonetia if not v]
    assert len(invalid) >= 20
    for case_id, text, functions in invalid:
        with pytest.raises(AdqlSyntaxError) as info:
            parse(text, udfs=functions)
        assert info.value.line is not None and info.value.line >= 1, case_id
        assert info.value.column is not None and info.value.column >= 1, case_id
