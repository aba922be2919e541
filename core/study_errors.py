"""The errors of human evaluation studies (docs/method.md §5), shared by designing a study
(core.study_design) and rating it (core.studies); each message says what to fix."""

from __future__ import annotations


class StudyError(ValueError):
    """Bad study input (the message says what to fix)."""


class StudyNotFound(LookupError):
    """No such study, or no such item in it."""


class StudyClosed(StudyError):
    """The study is closed: its ratings are frozen."""
