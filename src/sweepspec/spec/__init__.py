"""The spec: loading a YAML file into a validated :class:`Spec`, with findings on the way."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from .findings import Finding, format_path
from .loader import Document
from .loader import load as load_yaml
from .loader import loads as loads_yaml
from .models import Spec

__all__ = ["Checked", "Finding", "Spec", "SpecError", "check", "check_text", "format_path", "load"]


@dataclass
class Checked:
    """The outcome of checking one file: the spec (None when it has errors) and findings."""

    file: str
    spec: Spec | None
    findings: list[Finding] = field(default_factory=list)
    data: object = None

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)


class SpecError(Exception):
    """A spec file has errors; ``findings`` says where."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("\n".join(f.format() for f in findings))


def _check_document(doc: Document) -> Checked:
    from .messages import findings_from
    from .rules import run_rules

    findings = list(doc.findings)
    if doc.data is None and any(f.level == "error" for f in findings):  # the loader said why
        return Checked(doc.file, None, _sorted(findings))
    if not isinstance(doc.data, dict):
        kind = (
            "a list"
            if isinstance(doc.data, list)
            else "null"
            if doc.data is None
            else repr(doc.data)
        )
        findings.append(
            doc.finding(
                "error",
                (),
                f"a spec is a mapping of keys (method, parameters, ...), but the file holds {kind}",
            )
        )
        return Checked(doc.file, None, _sorted(findings), doc.data)
    try:
        spec = Spec.model_validate(doc.data)
    except ValidationError as exc:
        findings.extend(findings_from(exc, doc))
        findings.extend(_lint_the_rest(doc, exc))
        return Checked(doc.file, None, _sorted(findings), doc.data)
    findings.extend(run_rules(spec, doc))
    ok = not any(f.level == "error" for f in findings)
    return Checked(doc.file, spec if ok else None, _sorted(findings), doc.data)


def _lint_the_rest(doc: Document, exc: ValidationError) -> list[Finding]:
    """With errors in some keys, still lint the others: drop the nodes in error (a few rounds,
    as an error can hide another) and run the rules on what remains. Only their warnings and
    the macro errors are kept: an error about a dropped node would mislead. The macro findings
    come from the raw data, so the command-macros rule is not counted a second time."""
    import copy

    from .messages import error_paths
    from .rules import macro_findings, run_rules

    out = list(macro_findings(doc.data.get("command"), doc))
    data = copy.deepcopy(doc.data)
    for _ in range(5):
        for path in error_paths(exc, data):
            _drop(data, path)
        try:
            spec = Spec.model_validate(data)
        except ValidationError as again:
            exc = again
            continue
        out.extend(
            f
            for f in run_rules(spec, doc)
            if f.level == "warning" and f.rule not in ("metric-required", "command-macros")
        )
        break
    return out


def _drop(data: object, path: tuple[object, ...]) -> None:
    node = data
    for part in path[:-1]:
        try:
            node = node[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return
    if path and isinstance(node, dict):
        node.pop(path[-1], None)
    elif path and isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node.pop(path[-1])


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.line, f.col, f.level != "error"))


def check(path: str) -> Checked:
    """Load and validate the spec file at ``path``; never raises for bad input."""
    return _check_document(load_yaml(path))


def check_text(text: str, file: str = "<string>") -> Checked:
    return _check_document(loads_yaml(text, file))


def load(path: str) -> Spec:
    """The validated spec at ``path``; :class:`SpecError` when it has errors."""
    checked = check(path)
    if checked.spec is None:
        raise SpecError([f for f in checked.findings if f.level == "error"])
    return checked.spec
