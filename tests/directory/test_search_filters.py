"""Search filters that cannot match anything are refused with a French message."""

from __future__ import annotations

import pytest

from directory.search import Query, QueryError, build


@pytest.mark.parametrize("postcode", ["7500A", "2A000", "abc", "750011", "-"])
def test_postcode_must_be_digits(postcode: str) -> None:
    with pytest.raises(QueryError) as caught:
        build(Query(postcode=postcode))
    assert caught.value.message_fr == "Code postal invalide."


@pytest.mark.parametrize("postcode", ["75", "20000", "97400", " 75 011 "])
def test_postcode_digits_and_prefixes_are_accepted(postcode: str) -> None:
    build(Query(postcode=postcode))
