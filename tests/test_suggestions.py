"""The suggestions store of POST /suggest (serve.suggestions), without a server: durable lines, one per pair."""

from __future__ import annotations

import json

from serve.suggestions import SuggestionStore, read_suggestions


def test_a_line_cut_short_by_a_crash_loses_no_other_suggestion(tmp_path):
    store = SuggestionStore(tmp_path)
    store.add("eins", "one", "de", "en")
    with store.path("de", "en").open("a", encoding="utf-8") as f:
        f.write('{"de": "zw')  # a write cut short
    store.add("drei", "three", "de", "en")
    lines = store.path("de", "en").read_text(encoding="utf-8").splitlines()
    assert lines[0] == json.dumps({"de": "eins", "en": "one"}) and lines[2] == json.dumps({"de": "drei", "en": "three"})
    assert read_suggestions(store.path("de", "en")) == [{"de": "eins", "en": "one"}, {"de": "drei", "en": "three"}]
