"""``OUTLAST_CHAOS``: the rehearsal plan, parsed and validated.

The variable is comma-separated entries::

    dns_empty=1.0@*.amazonaws.com, connect_refused=0.05, latency=0.2@0.1, seed=7

``FAULT=PROBABILITY[@PATTERN]`` injects ``FAULT`` with that probability (0 to 1) into
operations on names matching ``PATTERN`` (shell-style, ``*.amazonaws.com``; every name
when left out). ``latency=SECONDS@PROBABILITY[@PATTERN]`` delays requests.
``seed=N`` makes the dice repeatable; ``after=SECONDS`` holds every fault back for that
long after a component is built, so a service can warm up before its outage starts.

It lives below the layers because ``outlast._config`` parses the variable with it; it
imports nothing from outlast but the errors. ``outlast.chaos`` re-exports it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import random as _random
import re
import time
from collections.abc import Callable
from typing import Final

from outlast._exceptions import ConfigError

__all__ = [
    "CONNECT_FAULTS",
    "DNS_FAULTS",
    "FAULTS",
    "HTTP_FAULTS",
    "ChaosPlan",
    "Rule",
    "parse_chaos",
]

SETTING: Final = "OUTLAST_CHAOS"
#: Faults injected at the DNS provider layer, in the order they are rolled.
DNS_FAULTS: Final = ("dns_timeout", "dns_servfail", "dns_nxdomain", "dns_empty")
#: Faults injected where a connection to one address is dialled.
CONNECT_FAULTS: Final = ("connect_timeout", "connect_refused")
#: Faults injected around one HTTP attempt, inside the retry policy.
HTTP_FAULTS: Final = ("latency", "http_503")
FAULTS: Final = DNS_FAULTS + CONNECT_FAULTS + HTTP_FAULTS
_OPTIONS: Final = ("seed", "after")
_PATTERN: Final = re.compile(r"^[a-z0-9*?._-]+$")
_FORMAT: Final = (
    "comma-separated FAULT=PROBABILITY[@PATTERN], latency=SECONDS@PROBABILITY[@PATTERN], "
    "seed=N, after=SECONDS; see docs/rehearsal.md"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One ``OUTLAST_CHAOS`` entry: inject ``fault`` with ``probability`` on matching names.

    ``seconds`` is the delay of a ``latency`` rule (0 for the others); ``pattern`` is
    the shell-style name pattern, None for every name.

    Added in 0.1.0.
    """

    fault: str
    probability: float
    seconds: float = 0.0
    pattern: str | None = None

    def matches(self, host: str) -> bool:
        """Whether this rule covers ``host`` (compared lower-case, without a final dot)."""
        if self.pattern is None:
            return True
        return fnmatch.fnmatchcase(host.lower().rstrip("."), self.pattern)


class ChaosPlan:
    """The faults to inject, and the dice that decide when. Build one with :func:`parse_chaos`.

    ``random`` returns floats in [0, 1) (``random.Random(seed).random`` by default) and
    ``clock`` is monotonic seconds; both can be injected for tests. Safe to share
    between threads.

    Added in 0.1.0.
    """

    __slots__ = ("_by_fault", "_clock", "_random", "_starts_at", "after", "rules", "seed", "text")

    def __init__(
        self,
        rules: tuple[Rule, ...],
        *,
        text: str = "",
        seed: int | None = None,
        after: float = 0.0,
        random: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.text = text
        self.seed = seed
        self.after = after
        self._random = random if random is not None else _random.Random(seed).random
        self._clock = clock
        self._starts_at = clock() + after
        by_fault: dict[str, list[Rule]] = {}
        for rule in rules:
            by_fault.setdefault(rule.fault, []).append(rule)
        self._by_fault = {fault: tuple(found) for fault, found in by_fault.items()}

    def __repr__(self) -> str:
        return f"ChaosPlan({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChaosPlan):
            return NotImplemented
        return (self.rules, self.seed, self.after) == (other.rules, other.seed, other.after)

    def __hash__(self) -> int:
        return hash((self.rules, self.seed, self.after))

    def has_any(self, faults: tuple[str, ...]) -> bool:
        """Whether any of ``faults`` is planned (with a probability above 0)."""
        return any(
            rule.probability > 0 for fault in faults for rule in self._by_fault.get(fault, ())
        )

    def roll(self, fault: str, host: str) -> Rule | None:
        """The rule injecting ``fault`` into this operation on ``host`` now, or None.

        The first rule for ``fault`` whose pattern matches ``host`` decides; one roll of
        the dice per call.
        """
        rules = self._by_fault.get(fault)
        if not rules or self._clock() < self._starts_at:
            return None
        for rule in rules:
            if rule.matches(host):
                return rule if self._random() < rule.probability else None
        return None

    def first(self, faults: tuple[str, ...], host: str) -> Rule | None:
        """The first of ``faults`` (in order) whose roll fires for ``host``, or None."""
        for fault in faults:
            rule = self.roll(fault, host)
            if rule is not None:
                return rule
        return None


def _invalid(raw: str, expected: str) -> ConfigError:
    return ConfigError(SETTING, raw, f"{expected} (entries: {_FORMAT})")


def _probability(raw: str, entry: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails too
        raise _invalid(raw, f"a probability from 0 to 1 in {entry!r}, not {text!r}")
    return value


def _pattern(raw: str, entry: str, text: str) -> str:
    pattern = text.strip().lower().rstrip(".")
    if not pattern or not _PATTERN.match(pattern):
        raise _invalid(raw, f"a name pattern like '*.amazonaws.com' in {entry!r}, not {text!r}")
    return pattern


def _rule(raw: str, entry: str, fault: str, value: str) -> Rule:
    parts = [part.strip() for part in value.split("@")]
    if fault == "latency":
        if len(parts) not in (2, 3):
            raise _invalid(raw, f"latency=SECONDS@PROBABILITY[@PATTERN], not {entry!r}")
        try:
            seconds = float(parts[0])
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds >= 0):
            raise _invalid(raw, f"a delay in seconds (0 or more) in {entry!r}, not {parts[0]!r}")
        probability = _probability(raw, entry, parts[1])
        pattern = _pattern(raw, entry, parts[2]) if len(parts) == 3 else None
        return Rule(fault, probability, seconds, pattern)
    if len(parts) not in (1, 2):
        raise _invalid(raw, f"{fault}=PROBABILITY[@PATTERN], not {entry!r}")
    probability = _probability(raw, entry, parts[0])
    pattern = _pattern(raw, entry, parts[1]) if len(parts) == 2 else None
    return Rule(fault, probability, 0.0, pattern)


def parse_chaos(
    text: str | None,
    *,
    random: Callable[[], float] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ChaosPlan | None:
    """Parse an ``OUTLAST_CHAOS`` value; None when it is unset or blank.

    Raises :class:`~outlast.ConfigError` naming ``OUTLAST_CHAOS``, the value and what
    was expected. ``random`` and ``clock`` replace the plan's dice and clock.

    Added in 0.1.0.
    """
    if text is None or not text.strip():
        return None
    rules: list[Rule] = []
    seen: set[tuple[str, str | None]] = set()
    seed: int | None = None
    after = 0.0
    for item in text.split(","):
        entry = item.strip()
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name = name.strip().lower()
        if not sep or not value.strip():
            raise _invalid(text, f"NAME=VALUE, not {entry!r}")
        if name == "seed":
            if not value.strip().isdigit():
                raise _invalid(text, f"a whole number after seed=, not {value!r}")
            seed = int(value)
            continue
        if name == "after":
            try:
                after = float(value)
            except ValueError:
                after = math.nan
            if not (math.isfinite(after) and after >= 0):
                raise _invalid(text, f"seconds (0 or more) after after=, not {value!r}")
            continue
        if name not in FAULTS:
            raise _invalid(text, f"a fault from {', '.join(FAULTS)}, not {name!r}")
        rule = _rule(text, entry, name, value)
        if (rule.fault, rule.pattern) in seen:
            raise _invalid(text, f"each fault once per name pattern ({name} is repeated)")
        seen.add((rule.fault, rule.pattern))
        rules.append(rule)
    if not rules:
        raise _invalid(text, "at least one fault")
    return ChaosPlan(
        tuple(rules), text=text.strip(), seed=seed, after=after, random=random, clock=clock
    )
