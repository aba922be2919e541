"""One text for concept presence (docs/method.md §1.8): the item text publish writes -- which
steering and segment steering tokenise -- is verification's text, titles left out unless the
run counts title words; a title word is then not a concept present in the item."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from backend.steering.text import RunText, _postings
from core.store.reads import ItemText
from worker.data.dataset import Dataset
from worker.stages.publish import item_rows

TITLES = ["War Games (1983)", "Children of Men (2006)", "Heat (1995)"]
GENRES = [["Thriller"], ["Drama", "Sci-Fi"], ["Action", "Crime"]]


def _dataset() -> Dataset:
    texts = [f"{t} | {', '.join(g)}" for t, g in zip(TITLES, GENRES, strict=True)]
    return Dataset(
        name="tiny", user_ids=["0"], item_ids=["a", "b", "c"],
        sequences=[np.array([0, 1, 2], np.int64)], timestamps=[np.arange(3)],
        item_title=TITLES, item_genres=GENRES, item_tags=[[], [], []], item_text=texts,
    )  # fmt: skip


def _run_text(title_words: bool) -> RunText:
    run = SimpleNamespace(dataset=_dataset(), config=SimpleNamespace(tfidf_title_words=title_words))
    rows = item_rows(run)  # type: ignore[arg-type]
    titles, postings = _postings("r", [ItemText(r.idx, r.title, r.text) for r in rows], 3)
    empty = np.zeros(0, np.int64)
    return RunText(titles, postings, np.zeros(2, np.int64), empty, empty, empty, [])


def test_published_text_is_the_verification_text() -> None:
    rows = item_rows(
        SimpleNamespace(dataset=_dataset(), config=SimpleNamespace(tfidf_title_words=False))
    )  # type: ignore[arg-type]
    assert [r.text for r in rows] == ["Thriller", "Drama, Sci-Fi", "Action, Crime"]
    text = _run_text(title_words=False)
    # "war" and "children" are title words only: not present, as verification would not count them
    assert not text.concept_mask("war").any() and not text.concept_mask("children").any()
    assert text.concept_mask("sci-fi").tolist() == [False, True, False]
    with_titles = _run_text(title_words=True)
    assert with_titles.concept_mask("war").tolist() == [True, False, False]
