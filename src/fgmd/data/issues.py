"""Problems found in a dataset: :class:`Issue` (severity, location, message) and :class:`IssueLog`.

Format parsers report every problem through an :class:`IssueLog`. A *strict* log (what the
datasets use) raises :class:`DataFormatError` at the first error; a
collecting log (what ``fgmd check-data`` uses) records it and lets the parser go on, so one
run lists every problem. A record with an error is left out of what the parser returns, but
the error is always reported: nothing is skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)


class DataFormatError(ValueError):
    """An index file of a dataset is malformed; the message names ``file:line``."""


@dataclass(frozen=True)
class Issue:
    """One finding. ``location`` is ``file:line``, a file or folder, or ``""`` (dataset-wide)."""

    severity: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message

    def to_dict(self) -> dict:
        return {"severity": self.severity, "location": self.location, "message": self.message}


@dataclass
class IssueLog:
    """Collects issues; with ``strict`` an error raises :class:`DataFormatError` at once."""

    strict: bool = True
    items: list[Issue] = field(default_factory=list)

    def error(self, location: str, message: str) -> None:
        issue = Issue(ERROR, str(location), message)
        if self.strict:
            raise DataFormatError(str(issue))
        self.items.append(issue)

    def warning(self, location: str, message: str) -> None:
        self.items.append(Issue(WARNING, str(location), message))

    def info(self, location: str, message: str) -> None:
        self.items.append(Issue(INFO, str(location), message))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.items if i.severity == ERROR]


class DataCheckError(DataFormatError):
    """A dataset has errors; ``issues`` lists every one (the message too, one per line)."""

    def __init__(self, summary: str, issues: list[Issue]):
        self.issues = list(issues)
        errors = [i for i in self.issues if i.severity == ERROR]
        if len(errors) == 1:  # one mistake, one line
            super().__init__(f"{summary}{' ' if summary.endswith(':') else ': '}{errors[0]}")
            return
        lines = [summary, *(f"  {issue}" for issue in errors)]
        super().__init__("\n".join(lines))
