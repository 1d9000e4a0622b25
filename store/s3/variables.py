"""Policy variables and IAM wildcards (sans-IO, pure): what Resources and String/Arn
conditions of a policy share.

``substitute`` replaces ``${aws:username}``, any context key, ``${key, 'default'}``, ``${*}``,
``${?}`` and ``${$}`` in policy text; substituted text is literal (a user named ``a*`` can never
widen ``home/${aws:username}/*``). ``like`` matches a value against a policy pattern with IAM's
wildcards ``*`` and ``?`` (which cross ``/``), in linear time (no regular expression, so a
pattern like ``*a*a*...b`` cannot take exponential time).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

Context: TypeAlias = Mapping[str, str | Sequence[str]]

# Glob tokens: a literal is one character, a wildcard is two, so they never compare equal.
STAR = "\0*"
ONE = "\0?"

# The normalised context: lowercased key -> value as given (str) or as a tuple (multivalued).
Ctx: TypeAlias = dict[str, str | tuple[str, ...]]

VARIABLE_RE = re.compile(r"\$\{\s*([^\s,'{}]+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?\}")
ESCAPES = {"*": "*", "?": "?", "$": "$"}


class MissingVariable(LookupError):
    """A policy variable names a key that is absent (or multivalued) and has no default.

    ``substitute`` raises it; ``Condition.matches`` catches it and returns False, because AWS
    makes a statement whose variable cannot be resolved not apply.
    """

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def normalize(context: Context) -> Ctx:
    return {
        key.lower(): value if isinstance(value, str) else tuple(value)
        for key, value in context.items()
    }


def values_of(ctx: Ctx, key: str) -> tuple[str, ...]:
    value = ctx.get(key, ())
    return (value,) if isinstance(value, str) else value


# --- policy variables ---------------------------------------------------------------------------


def expand(text: str, ctx: Ctx) -> list[tuple[str, bool]]:
    """Split ``text`` into (segment, is_policy_text) after substituting its variables.

    Substituted segments are marked so that wildcard operators treat them literally: a user
    named ``a*`` must not widen ``home/${aws:username}/*``.
    """
    pieces: list[tuple[str, bool]] = []
    start = 0
    for m in VARIABLE_RE.finditer(text):
        if m.start() > start:
            pieces.append((text[start : m.start()], True))
        name, default = m.group(1), m.group(2)
        if name in ESCAPES:
            pieces.append((ESCAPES[name], False))
        else:
            value = ctx.get(name.lower())
            if isinstance(value, str):
                pieces.append((value, False))
            elif default is not None:
                pieces.append((default.replace("''", "'"), False))
            else:
                # Absent, or multivalued: AWS cannot use either as a variable.
                raise MissingVariable(name)
        start = m.end()
    if start < len(text):
        pieces.append((text[start:], True))
    return pieces


def substitute(text: str, context: Context) -> str:
    """Replace the policy variables in ``text`` with their values from ``context``.

    ``${key}`` takes a single-valued key's value (key names are case-insensitive);
    ``${key, 'default'}`` falls back to ``default`` ('' inside it is a quote); ``${*}``, ``${?}``
    and ``${$}`` are a literal ``*``, ``?`` and ``$``. Text that is not a well-formed variable is
    kept as is, and substitution is one pass (a value containing ``${...}`` stays literal).
    Raises ``MissingVariable`` when a variable without default names an absent or multivalued
    key.

    >>> substitute("home/${aws:username}/${*}", {"AWS:UserName": "alice"})
    'home/alice/*'
    >>> substitute("${aws:PrincipalTag/team, 'company-wide'}", {})
    'company-wide'
    >>> substitute("${aws:userid}", {})
    Traceback (most recent call last):
    ...
    store.s3.variables.MissingVariable: aws:userid
    """
    return substitute_in(text, normalize(context))


def substitute_in(text: str, ctx: Ctx) -> str:
    return "".join(segment for segment, _ in expand(text, ctx))


def like(pattern: str, value: str, context: Context) -> bool:
    """Does ``value`` match ``pattern`` as StringLike matches, variables substituted?

    For ``Resource`` patterns too: ``*`` and ``?`` written in the policy are wildcards, while
    ``${*}``, ``${?}`` and substituted values are literal, so a user named ``a*`` cannot widen
    ``home/${aws:username}/*``. Raises ``MissingVariable`` like ``substitute``.

    >>> like("arn:aws:s3:::b/home/${aws:username}/*", "arn:aws:s3:::b/home/al/x", {"aws:username": "al"})
    True
    >>> like("b/${*}", "b/x", {}), like("b/${*}", "b/*", {})
    (False, True)
    """  # noqa: E501
    return glob_match(tokens(expand(pattern, normalize(context))), value)


# --- wildcard matching --------------------------------------------------------------------------


def tokens(pieces: Iterable[tuple[str, bool]]) -> list[str]:
    out: list[str] = []
    for segment, is_policy in pieces:
        for ch in segment:
            if is_policy and ch == "*":
                out.append(STAR)
            elif is_policy and ch == "?":
                out.append(ONE)
            else:
                out.append(ch)
    return out


def glob_match(pattern: Sequence[str], text: str) -> bool:
    """Does ``text`` match the glob tokens? ``*`` spans any characters (``/`` too).

    Greedy with one backtrack point, O(len(pattern) * len(text)) at worst: a regex would
    backtrack exponentially on patterns like ``*a*a*a*b`` that a policy author controls.
    """
    p = t = 0
    star = -1
    mark = 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == ONE or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == STAR:
            star, mark = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == STAR:
        p += 1
    return p == len(pattern)


def arn_parts(tokens: Sequence[str]) -> tuple[tuple[str, ...], ...] | None:
    """Split glob tokens into the six ARN parts (None if fewer); extra colons stay in the last."""
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == ":" and len(parts) < 6:
            parts.append([])
        else:
            parts[-1].append(token)
    return tuple(tuple(part) for part in parts) if len(parts) == 6 else None
