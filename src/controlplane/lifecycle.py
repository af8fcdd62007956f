"""The life cycle of a project's data contracts: states, the transitions between them, who did what.

    from controlplane.lifecycle import ACTIONS, LifecycleError, Record, current_user, next_state
    next_state("IN_REVIEW", "approve")        # 'APPROVED'
    next_state("ACTIVE", "approve")           # LifecycleError: approve needs IN_REVIEW, not ACTIVE
    user = current_user(args.user)            # --user, $PSTREAM_USER, or the OS user
    record = Record.new("acme/Shop/1.1.0", author=user, content_sha256=digest)
    record.apply("submit", user)              # state, history and the people, checked

A contract created with ``pstream contracts create`` has a record next to its file
(``<project>/contracts/<handle>/<name>/<version>.lifecycle.json``, written atomically, 0600):
its state, its author, the hash of its content at creation and every transition (action, from,
to, user, time, reason). A record is used only when its history leads, by allowed transitions
and reviewers other than the author, from the author's ``create`` to its state
(``Record.history_problem``): a ``state`` edited by hand is refused, not obeyed. The record is
the authority on the state; ``controlplane.contracts``
keeps the YAML file's ``state:`` in step, so a pipeline that reads the file by path sees it too.

    DRAFT --submit--> IN_REVIEW --approve--> APPROVED --activate--> ACTIVE --deprecate--> DEPRECATED
      ^                   |                                                                  |
      +------reject-------+                                                                  |
    DRAFT, APPROVED, DEPRECATED --archive--> ARCHIVED   <---------------------------------------+

``approve`` and ``reject`` need a reviewer other than the author (no self-approval; a reject
needs a reason). "Other" is decided on ``person_key`` of both names (Unicode compatibility forms,
accents, case, spaces and punctuation aside), so ``Ann``, ``ａｎｎ`` or ``a.nn`` is not a
reviewer of ann's contract; a user name holds no control, format (zero-width, bidirectional) or
line-separator characters (``current_user``). A reason is at most ``MAX_REASON_CHARS``, plain
text. Only ACTIVE and DEPRECATED contracts accept events (DEPRECATED with a warning):
``contracts.model.ACCEPTING``. ARCHIVED is final.
"""
from __future__ import annotations

import getpass
import os
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field

from contracts.model import ACCEPTING, ACTIVE

USER_ENV = "PSTREAM_USER"
DRAFT, IN_REVIEW, APPROVED, DEPRECATED, ARCHIVED = "DRAFT", "IN_REVIEW", "APPROVED", "DEPRECATED", "ARCHIVED"
# action -> (states it starts from, the state it leads to)
ACTIONS = {
    "submit": ((DRAFT,), IN_REVIEW),
    "approve": ((IN_REVIEW,), APPROVED),
    "reject": ((IN_REVIEW,), DRAFT),
    "activate": ((APPROVED,), ACTIVE),
    "deprecate": ((ACTIVE,), DEPRECATED),
    "archive": ((DRAFT, APPROVED, DEPRECATED), ARCHIVED),
}
REVIEW_ACTIONS = ("approve", "reject")
MAX_USER_CHARS = 100
MAX_REASON_CHARS = 2000
_HINTS = {
    ("activate", DRAFT): "submit it for review first (pstream contracts submit)",
    ("activate", IN_REVIEW): "a reviewer approves it first (pstream contracts approve --user REVIEWER)",
    ("archive", ACTIVE): "deprecate it first (pstream contracts deprecate), so producers are warned",
    ("archive", IN_REVIEW): "approve or reject the review first",
}


class LifecycleError(ValueError):
    """A transition that is not allowed; the message says which and why (the CLI exits 2)."""


def current_user(given: str | None = None) -> str:
    """The acting user: ``given`` (--user), else $PSTREAM_USER, else the OS user name."""
    user = given or os.environ.get(USER_ENV) or _os_user()
    user = user.strip() if isinstance(user, str) else ""
    if not user or len(user) > MAX_USER_CHARS or not _printable(user) or not person_key(user):
        raise LifecycleError(f"the user name must be 1-{MAX_USER_CHARS} printable characters, with a letter or "
                             "digit, and no control, zero-width, bidirectional or line-separator characters "
                             "(--user or $PSTREAM_USER)")
    return user


def _printable(text: str) -> bool:
    """No control (Cc), format (Cf: zero-width, bidi), separator (Zl, Zp), unassigned or private
    characters, and no space but ' '."""
    return all(ch == " " or unicodedata.category(ch)[0] != "Z" and unicodedata.category(ch) not in
               ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text)


def shown(text) -> str:
    """``text`` for a terminal: control and format characters (ESC, bidi overrides, zero-width)
    written as escapes, so a name or reason in a record or a log cannot move the cursor or hide text."""
    text = str(text)
    return "".join(ch if ch == " " or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")
                   else ch.encode("unicode_escape").decode("ascii") for ch in text)


def person_key(user: str) -> str:
    """What two user names must differ in to be two people: their letters and digits, in Unicode
    compatibility form, without accents, case-folded (``'Ann'``, ``'ａｎｎ'``, ``'a.nn'``, ``'ánn'``
    -> ``'ann'``). Look-alike letters of other scripts (Cyrillic 'а') are not folded."""
    decomposed = unicodedata.normalize("NFKD", user).casefold()
    return "".join(ch for ch in unicodedata.normalize("NFKD", decomposed)
                   if unicodedata.category(ch)[0] in ("L", "N"))


def same_person(a: str, b: str) -> bool:
    return person_key(a) == person_key(b)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:   # no login name (a container without a passwd entry)
        return ""


def next_state(state: str, action: str) -> str:
    """The state ``action`` leads to from ``state``; LifecycleError when it does not start there."""
    if action not in ACTIONS:
        raise LifecycleError(f"unknown action '{action}' (one of {', '.join(ACTIONS)})")
    starts, target = ACTIONS[action]
    if state not in starts:
        hint = _HINTS.get((action, state), "")
        raise LifecycleError(f"cannot {action} a contract in state {state}: {action} needs "
                             f"{' or '.join(starts)}" + (f"; {hint}" if hint else ""))
    return target


def accepts_events(state: str) -> bool:
    return state in ACCEPTING


@dataclass
class Record:
    """The lifecycle record of one contract version (see the module docstring)."""

    ref: str
    state: str
    author: str
    created_at: int
    content_sha256: str
    history: list = field(default_factory=list)   # {action, from, to, user, at, reason?}

    @classmethod
    def new(cls, ref: str, author: str, content_sha256: str, now: float | None = None) -> "Record":
        at = _ms(now)
        return cls(ref, DRAFT, author, at, content_sha256,
                   [{"action": "create", "from": None, "to": DRAFT, "user": author, "at": at}])

    @classmethod
    def from_file(cls, data: dict, source: str) -> "Record":
        try:
            record = cls(**data)
        except TypeError as exc:
            raise LifecycleError(f"{source}: not a lifecycle record ({exc})") from None
        if record.state not in (*ACCEPTING, DRAFT, IN_REVIEW, APPROVED, ARCHIVED):
            raise LifecycleError(f"{source}: unknown state '{record.state}'")
        problem = record.history_problem()
        if problem:
            raise LifecycleError(f"{source}: {problem} (edited by hand?): the record is not used")
        return record

    def history_problem(self) -> str | None:
        """Why the history does not lead, by allowed transitions and reviewers other than the author,
        from a ``create`` by the author to the state; None when it does."""
        history = self.history if isinstance(self.history, list) else []
        first = history[0] if history and isinstance(history[0], dict) else {}
        if not isinstance(self.author, str) or first.get("action") != "create" or first.get("to") != DRAFT \
                or first.get("user") != self.author:
            return "its history does not start with its author's create"
        state = DRAFT
        for number, entry in enumerate(history[1:], start=2):
            action = entry.get("action") if isinstance(entry, dict) else None
            if action not in ACTIONS or entry.get("from") != state or state not in ACTIONS[action][0] \
                    or entry.get("to") != ACTIONS[action][1]:
                return f"its history's step {number} is not an allowed transition from {state}"
            if action in REVIEW_ACTIONS and (not isinstance(entry.get("user"), str)
                                             or same_person(entry["user"], self.author)):
                return f"its history's step {number} ({action}) is by the author"
            state = entry["to"]
        if state != self.state:
            return f"its history leads to {state}, not to its state {self.state}"
        return None

    def to_file(self) -> dict:
        return asdict(self)

    def apply(self, action: str, user: str, reason: str | None = None, now: float | None = None) -> dict:
        """Make the transition (state and history); the history entry it added. LifecycleError when
        the state does not allow it, a reviewer is the author, or a reject has no reason."""
        target = next_state(self.state, action)
        if action in REVIEW_ACTIONS and same_person(user, self.author):
            raise LifecycleError(f"{user} is the author of {self.ref} and cannot {action} it: a reviewer "
                                 "other than the author decides (--user REVIEWER or $PSTREAM_USER)")
        if action == "reject" and not (reason or "").strip():
            raise LifecycleError("reject needs --reason TEXT: the author needs to know what to change")
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise LifecycleError(f"--reason is {len(reason):,} characters: at most {MAX_REASON_CHARS:,}")
        if reason is not None and not _printable(reason.replace("\n", " ")):
            raise LifecycleError("--reason holds control, zero-width or bidirectional characters: plain text, please")
        entry = {"action": action, "from": self.state, "to": target, "user": user, "at": _ms(now)}
        if reason:
            entry["reason"] = reason.strip()
        self.state = target
        self.history.append(entry)
        return entry

    def last(self, action: str) -> dict | None:
        return next((e for e in reversed(self.history) if e.get("action") == action), None)


def _ms(now: float | None) -> int:
    return int((time.time() if now is None else now) * 1000)
