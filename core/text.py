"""The one tokenisation of item metadata: what TF-IDF counts, what verification matches and what
the explorer's concept presence checks (docs/method.md §1.8).

Tokenisation (:func:`analyze`, used both by the vectorizer and by every term match, so a term can
only match where TF-IDF could have counted it — token membership, never substring, so "war" does
not match "Warriors"):
- accents stripped and lowercased;
- tokens are runs of letters/digits, hyphens kept inside ("sci-fi", "film-noir" stay whole, so
  MovieLens genres are one term each), split at apostrophes and other punctuation;
- tokens of one character and tokens without a letter (years such as "1995", "2") are dropped:
  they name no concept;
- scikit-learn's English stop words are removed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, strip_accents_unicode

# >= 2 characters of [letters, digits, inner hyphens], at least one letter.
TOKEN_RE = re.compile(r"(?u)\b(?=[\w-]*[^\W\d_])[^\W_][\w-]*[^\W_]\b")


# Words that pass the tokeniser yet name no concept on their own (a "high" from "high school",
# a "good" from "good acting"): never a TF-IDF concept or top term, still matched like any token
# (docs/method.md §1.8, 'no names, no stop-like words').
CONCEPT_STOP_WORDS = frozenset(
    """high low good great best better bad worse worst new old big little small long short
    based really lot lots nice ok okay pretty quite""".split()
)


def is_person_name(tag: str) -> bool:
    """Whether a tag reads as a person's name: two or three words, each a capital letter then
    letters (' . - allowed): "Steve Buscemi", "Jean-Pierre Jeunet". A lower-case word breaks it
    ("Guillermo del Toro" is not caught; "Science Fiction" is, see docs/method.md §1.8)."""
    words = tag.split()
    return 2 <= len(words) <= 3 and all(
        w[0].isupper() and all(ch.isalpha() or ch in "'.-" for ch in w) for w in words
    )


def analyze(text: str) -> list[str]:
    """Tokens of ``text``: what TF-IDF counts and what a concept term is matched against."""
    tokens = TOKEN_RE.findall(strip_accents_unicode(text.lower()))
    return [t for t in tokens if t not in ENGLISH_STOP_WORDS]


def item_token_sets(item_text: Sequence[str]) -> list[frozenset[str]]:
    """[n_items] token set of each item's metadata, for membership tests."""
    return [frozenset(analyze(t)) for t in item_text]
