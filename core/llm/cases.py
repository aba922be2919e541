"""A latent's cases as the LLM prompts show them (docs/method.md §1.7, §1.8): ``LatentCases`` of
``CaseText``, built from item ids through an ``ItemLookup`` (item id -> "title (genres)")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.llm.prompts import CaseText, candidate_vocabulary

RawCase = tuple[Sequence[int], int, int]  # (history item ids, predicted item id, level 0-10)


class _DatasetLike(Protocol):
    item_title: list[str]
    item_genres: list[list[str]]


@dataclass(frozen=True)
class ItemLookup:
    """Item id -> the label the LLM sees: ``title (genre, genre)`` (paper Table 5's style).

    ``titles``/``genres`` may be lists indexed by item id or mappings holding only the items
    needed (the backend loads just those).
    """

    titles: Sequence[str] | Mapping[int, str]
    genres: Sequence[Sequence[str]] | Mapping[int, Sequence[str]] | None = None
    # Each item's descriptive text (genres, tags, free text: what TF-IDF counts, docs/method.md
    # §1.8), for the prompts' candidate vocabulary; None: the labels' genres serve.
    texts: Sequence[str] | Mapping[int, str] | None = None

    @classmethod
    def from_dataset(cls, dataset: _DatasetLike) -> ItemLookup:
        return cls(dataset.item_title, dataset.item_genres)

    def label(self, item: int) -> str:
        try:
            title = self.titles[item]
        except (IndexError, KeyError) as exc:
            raise KeyError(f"item {item} has no title in the item lookup") from exc
        genres = list(self.genres[item]) if self.genres is not None else []
        return f"{title} ({', '.join(genres)})" if genres else title


@dataclass
class LatentCases:
    """A latent's examples (docs/method.md §1.7), as text. ``verification`` are active test-side
    cases (positives), ``random`` are cases where the latent is not active (negatives)."""

    latent_id: int
    construction: list[CaseText]
    verification: list[CaseText]
    random: list[CaseText]
    # Fewer than N active verification cases (docs/method.md §1.7); None: decide from
    # len(verification).
    too_rare: bool | None = None
    # The explanation prompt's candidate vocabulary (core.llm.prompts.candidate_vocabulary of
    # the construction items' descriptive texts); None: from the labels' genres.
    vocabulary: tuple[str, ...] | None = None

    @classmethod
    def from_ids(
        cls,
        latent_id: int,
        items: ItemLookup,
        construction: Iterable[RawCase],
        verification: Iterable[RawCase],
        random: Iterable[RawCase],
        too_rare: bool | None = None,
    ) -> LatentCases:
        """Build from ``(history item ids, predicted item id, level)`` triples."""

        def texts(raw: Iterable[RawCase]) -> list[CaseText]:
            return [
                CaseText(tuple(items.label(int(i)) for i in hist), items.label(int(pred)), int(lv))
                for hist, pred, lv in raw
            ]

        construction = list(construction)
        vocabulary = None
        if items.texts is not None:  # construction cases only: they select, never confirm
            described = items.texts
            vocabulary = candidate_vocabulary(
                [described[int(pred)] for _, pred, _ in construction],
                [described[int(i)] for hist, _, _ in construction for i in hist],
            )
        return cls(
            latent_id, texts(construction), texts(verification), texts(random), too_rare,
            vocabulary,
        )  # fmt: skip
