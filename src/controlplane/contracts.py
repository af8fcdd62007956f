"""The project's contract registry: data contracts by reference (``handle/name/version``), never by path.

    from controlplane.contracts import ContractRegistry
    registry = ContractRegistry(project_dir)
    contract = registry.get("acme/Shop/1.0.0")       # contracts.Contract, or ContractError
    registry.path("acme/Shop/1.0.0")                 # the file it comes from, or None
    registry.refs()                                  # every reference it can resolve

A user's own contracts live in the project: ``<project>/contracts/<handle>/<name>/<version>.yaml``;
then come the directories of ``$CONTRACTS_PATH`` and the shipped contracts (``src/contracts/``),
in that order. A reference is checked before any file is looked at: three parts of letters,
digits, '_', '.' and '-' (each starting with a letter or digit, at most 100 characters) and a
numeric version, so no reference can name a path outside those directories (no '/', '..',
or absolute paths). The file is read by ``contracts.loader.load_contract_ref``: bounded in size,
strict YAML (no anchors or aliases), the published contract schema, and it must declare the
reference it is filed under.

Nothing is cached: ``get`` reads the file each time, so a contract added to the project is
seen at once; callers that serve many requests (the gateway) keep their own bounded cache.
"""
from __future__ import annotations

import re
from pathlib import Path

from contracts.loader import ContractError, load_contract_ref, search_dirs

MAX_REF_CHARS = 320
_PART = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
REF = re.compile(rf"({_PART})/({_PART})/(\d{{1,9}}\.\d{{1,9}}\.\d{{1,9}})")   # whole string: fullmatch


def check_ref(ref) -> tuple[str, str, str]:
    """(handle, name, version) of a well-formed reference; ContractError (a bounded message) otherwise."""
    if not isinstance(ref, str) or len(ref) > MAX_REF_CHARS or not REF.fullmatch(ref):
        text = ref if isinstance(ref, str) else repr(ref)
        shown = text[:80].encode("unicode_escape").decode("ascii") + ("..." if len(text) > 80 else "")
        raise ContractError(f"'{shown}' is not a contract reference of the form handle/name/1.2.3")
    return REF.fullmatch(ref).groups()


class ContractRegistry:
    """Contracts of one project by reference; see the module docstring."""

    def __init__(self, project_dir: str | Path):
        self.project_dir = Path(project_dir)
        self.directories = search_dirs([self.project_dir / "contracts"])

    def path(self, ref: str) -> Path | None:
        """The file of a reference (the first directory that has it), or None; ContractError
        for a malformed reference."""
        handle, name, version = check_ref(ref)
        for directory in self.directories:
            candidate = directory / handle / name / f"{version}.yaml"
            if candidate.is_file():
                return candidate
        return None

    def get(self, ref: str):
        """The contract of ``ref``; ContractError when it is malformed, unknown, too large or invalid.

        Read by ``contracts.loader.load_contract_ref`` (strict YAML, size bound, the contract
        schema, and the file must declare the reference it is filed under)."""
        if self.path(ref) is None:
            raise ContractError(f"contract '{ref}' not found (a project's own contracts go in "
                                f"{self.project_dir / 'contracts'}/<handle>/<name>/<version>.yaml)")
        return load_contract_ref(ref, self.directories[:1])

    def refs(self) -> list[str]:
        """Every well-formed reference found in the registry's directories."""
        found = set()
        for directory in self.directories:
            for path in directory.glob("*/*/*.yaml"):
                ref = f"{path.parent.parent.name}/{path.parent.name}/{path.stem}"
                if REF.fullmatch(ref):
                    found.add(ref)
        return sorted(found)
