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


def analyze(text: str) -> list[str]:
    """Tokens of ``text``: what TF-IDF counts and what a concept term is matched against."""
    tokens = TOKEN_RE.findall(strip_accents_unicode(text.lower()))
    return [t for t in tokens if t not in ENGLISH_STOP_WORDS]


def item_token_sets(item_text: Sequence[str]) -> list[frozenset[str]]:
    """[n_items] token set of each item's metadata, for membership tests."""
    return [frozenset(analyze(t)) for t in item_text]
