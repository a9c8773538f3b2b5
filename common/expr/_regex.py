"""A small linear-time regular-expression matcher for the `matches` operator.

Called by common/expr/_runtime.py. expr-lang uses Go's RE2, which never
backtracks; Python's `re` does, so a pattern like `(a+)+$` or `a*a*a*a*b` from a
template could stall the controller whatever the input-length limit. This module
parses the RE2 subset condition authors use (literals, escapes, `.`, classes,
`\\d\\w\\s`, groups, `|`, `* + ? {m,n}`, `^ $`, a leading `(?i)`) into a
Thompson NFA and simulates it with state sets (a lazily built DFA), so the cost
is at most (input length x program size) and is charged to the evaluation's
step budget. Semantics follow RE2 defaults: unanchored search, `.` does not
match a newline, `^`/`$` anchor to the whole text. Backreferences and
look-around are rejected, as RE2 rejects them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from common.expr._common import MAX_PATTERN_LENGTH, ExpressionError, is_ascii_digits

MSG_PATTERN_TOO_LONG = "regular expression is {length} characters long; the limit is {limit}"
MSG_BAD_PATTERN = "invalid regular expression {pattern!r}: {reason} at offset {offset}"
MSG_PROGRAM_TOO_BIG = "regular expression {pattern!r} is too large once its repeats are expanded"

_MAX_REPEAT = 1_000  # RE2's own limit for {m,n}
_MAX_PROGRAM = 5_000
_MAX_GROUP_NESTING = 32
_MAX_CACHED_TRANSITIONS = 20_000

Pred = Callable[[str], bool]

_DIGIT: Pred = lambda c: "0" <= c <= "9"  # noqa: E731
_WORD: Pred = lambda c: c == "_" or "0" <= c <= "9" or "a" <= c.lower() <= "z"  # noqa: E731
_SPACE: Pred = lambda c: c in " \t\n\r\f\v"  # noqa: E731
_CLASS_ESCAPES: dict[str, Pred] = {
    "d": _DIGIT,
    "w": _WORD,
    "s": _SPACE,
    "D": lambda c: not _DIGIT(c),
    "W": lambda c: not _WORD(c),
    "S": lambda c: not _SPACE(c),
}
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}

# Instructions: (opcode, argument).
_PRED, _SPLIT, _JMP, _BOL, _EOL, _MATCH = range(6)



@dataclass
class _Node:
    kind: str  # pred | cat | alt | rep | bol | eol
    pred: Pred | None = None
    parts: list[_Node] = field(default_factory=list)
    low: int = 0
    high: int | None = None


class _PatternParser:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.i = 0
        self.icase = False
        self.nesting = 0

    def fail(self, reason: str, offset: int | None = None) -> None:
        raise ExpressionError(
            MSG_BAD_PATTERN.format(
                pattern=self.pattern, reason=reason, offset=self.i if offset is None else offset
            )
        )

    def peek(self) -> str:
        return self.pattern[self.i] if self.i < len(self.pattern) else ""

    def parse(self) -> _Node:
        if self.pattern.startswith("(?i)"):
            self.icase = True
            self.i = 4
        node = self.alternation()
        if self.i < len(self.pattern):
            self.fail("unexpected )")
        return node

    def alternation(self) -> _Node:
        branches = [self.concatenation()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.concatenation())
        return branches[0] if len(branches) == 1 else _Node(kind="alt", parts=branches)

    def concatenation(self) -> _Node:
        parts: list[_Node] = []
        while self.peek() not in ("", "|", ")"):
            parts.append(self.repeat(self.atom()))
        return _Node(kind="cat", parts=parts)

    def repeat(self, node: _Node) -> _Node:
        while True:
            ch = self.peek()
            start = self.i
            if ch == "*":
                low, high = 0, None
                self.i += 1
            elif ch == "+":
                low, high = 1, None
                self.i += 1
            elif ch == "?":
                low, high = 0, 1
                self.i += 1
            elif ch == "{" and self.counted() is not None:
                low, high = self.counted() or (0, None)
                self.i = self.pattern.index("}", self.i) + 1
            else:
                return node
            if node.kind in ("bol", "eol"):
                self.fail("missing argument to repetition operator", start)
            if self.peek() == "?":  # lazy: irrelevant for a yes/no match
                self.i += 1
            if self.peek() in ("*", "+", "?"):
                self.fail("invalid nested repetition operator", self.i)
            node = _Node(kind="rep", parts=[node], low=low, high=high)

    def counted(self) -> tuple[int, int | None] | None:
        end = self.pattern.find("}", self.i)
        if end < 0:
            return None
        body = self.pattern[self.i + 1 : end]
        low_text, comma, high_text = body.partition(",")
        if not is_ascii_digits(low_text) or (high_text and not is_ascii_digits(high_text)):
            return None  # RE2 treats a malformed {..} as literal text
        if len(low_text) > 4 or len(high_text) > 4:
            self.fail("invalid repeat count")
        low = int(low_text)
        high = int(high_text) if high_text else (None if comma else low)
        if low > _MAX_REPEAT or (high is not None and (high > _MAX_REPEAT or high < low)):
            self.fail("invalid repeat count")
        return low, high

    def atom(self) -> _Node:
        ch = self.peek()
        start = self.i
        self.i += 1
        if ch == "(":
            return self.group(start)
        if ch == "[":
            return self.char_class(start)
        if ch == ".":
            return self.pred(lambda c: c != "\n")
        if ch == "^":
            return _Node(kind="bol")
        if ch == "$":
            return _Node(kind="eol")
        if ch in "*+?":
            self.fail("missing argument to repetition operator", start)
        if ch == "\\":
            escaped = self.escape(in_class=False)
            if isinstance(escaped, str):
                return self.literal(escaped)
            if escaped is None:
                return _Node(kind="bol" if self.pattern[self.i - 1] == "A" else "eol")
            return self.pred(escaped)
        return self.literal(ch)

    def group(self, start: int) -> _Node:
        if self.pattern.startswith("?:", self.i):
            self.i += 2
        elif self.pattern.startswith(("?P<", "?<"), self.i):
            close = self.pattern.find(">", self.i)
            if close < 0:
                self.fail("invalid named capture", start)
            self.i = close + 1
        elif self.peek() == "?":
            self.fail("unsupported group flag or look-around", start)
        self.nesting += 1
        if self.nesting > _MAX_GROUP_NESTING:
            self.fail("groups nested too deeply", start)
        node = self.alternation()
        self.nesting -= 1
        if self.peek() != ")":
            self.fail("missing closing )", start)
        self.i += 1
        return node

    def escape(self, *, in_class: bool) -> str | Pred | None:
        """After a backslash: a literal char, a class predicate, or None for \\A / \\z."""
        ch = self.peek()
        start = self.i - 1
        if not ch:
            self.fail("trailing backslash", start)
        self.i += 1
        if ch in _CLASS_ESCAPES:
            return _CLASS_ESCAPES[ch]
        if ch in _CHAR_ESCAPES:
            return _CHAR_ESCAPES[ch]
        if ch == "x":
            digits = self.pattern[self.i : self.i + 2]
            if len(digits) == 2 and all(d in "0123456789abcdefABCDEF" for d in digits):
                self.i += 2
                return chr(int(digits, 16))
            self.fail("invalid escape", start)
        if ch in "Az" and not in_class:
            return None
        if ch.isalnum():
            # \b, \B, \1, \p{..} and friends: not offered here.
            self.fail(f"unsupported escape \\{ch}", start)
        return ch

    def char_class(self, start: int) -> _Node:
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        preds: list[Pred] = []
        ranges: list[tuple[str, str]] = []
        first = True
        while True:
            ch = self.peek()
            if not ch:
                self.fail("missing closing ]", start)
            if ch == "]" and not first:
                self.i += 1
                break
            first = False
            self.i += 1
            if ch == "[" and self.peek() == ":":
                self.fail("POSIX classes are not supported", self.i - 1)
            low: str
            if ch == "\\":
                escaped = self.escape(in_class=True)
                if not isinstance(escaped, str):
                    if escaped is not None:
                        preds.append(escaped)
                    continue
                low = escaped
            else:
                low = ch
            high = low
            if self.peek() == "-" and self.pattern[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                high = self.peek()
                self.i += 1
                if high == "\\":
                    escaped = self.escape(in_class=True)
                    if not isinstance(escaped, str):
                        self.fail("invalid character class range", start)
                        raise AssertionError("unreachable")
                    high = escaped
                if high < low:
                    self.fail("invalid character class range", start)
            ranges.append((low, high))
        frozen_ranges = tuple(ranges)
        frozen_preds = tuple(preds)

        def member(c: str) -> bool:
            hit = any(lo <= c <= hi for lo, hi in frozen_ranges) or any(p(c) for p in frozen_preds)
            return hit != negate

        return self.pred(member, negated_class=negate)

    def literal(self, ch: str) -> _Node:
        return self.pred(lambda c: c == ch)

    def pred(self, fn: Pred, *, negated_class: bool = False) -> _Node:
        if self.icase:
            base = fn
            if negated_class:
                # [^a] under (?i) must reject both "a" and "A".
                def fn(c: str) -> bool:
                    return base(c) and base(c.lower()) and base(c.upper())
            else:

                def fn(c: str) -> bool:
                    return base(c) or base(c.lower()) or base(c.upper())

        return _Node(kind="pred", pred=fn)


class Regex:
    """A compiled pattern; `search` answers whether it matches anywhere."""

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise ExpressionError(
                MSG_PATTERN_TOO_LONG.format(length=len(pattern), limit=MAX_PATTERN_LENGTH)
            )
        self.pattern = pattern
        self.program: list[tuple[int, object]] = []
        self._emit(_PatternParser(pattern).parse())
        self.program.append((_MATCH, None))
        self._closures: dict[tuple[frozenset[int], bool, bool], tuple[frozenset[int], bool]] = {}
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def _add(self, op: int, arg: object = None) -> int:
        if len(self.program) >= _MAX_PROGRAM:
            raise ExpressionError(MSG_PROGRAM_TOO_BIG.format(pattern=self.pattern))
        self.program.append((op, arg))
        return len(self.program) - 1

    def _emit(self, node: _Node) -> None:
        if node.kind == "pred":
            self._add(_PRED, node.pred)
        elif node.kind == "bol":
            self._add(_BOL)
        elif node.kind == "eol":
            self._add(_EOL)
        elif node.kind == "cat":
            for part in node.parts:
                self._emit(part)
        elif node.kind == "alt":
            jumps: list[int] = []
            for index, part in enumerate(node.parts):
                if index < len(node.parts) - 1:
                    split = self._add(_SPLIT)
                    self._emit(part)
                    jumps.append(self._add(_JMP))
                    self.program[split] = (_SPLIT, (split + 1, len(self.program)))
                else:
                    self._emit(part)
            for jump in jumps:
                self.program[jump] = (_JMP, len(self.program))
        elif node.kind == "rep":
            body = node.parts[0]
            for _ in range(node.low):
                self._emit(body)
            if node.high is None:
                loop = self._add(_SPLIT)
                self._emit(body)
                self._add(_JMP, loop)
                self.program[loop] = (_SPLIT, (loop + 1, len(self.program)))
            else:
                splits: list[int] = []
                for _ in range(node.high - node.low):
                    splits.append(self._add(_SPLIT))
                    self._emit(body)
                for split in splits:
                    self.program[split] = (_SPLIT, (split + 1, len(self.program)))

    def _closure(
        self, seeds: frozenset[int], at_start: bool, at_end: bool
    ) -> tuple[frozenset[int], bool]:
        key = (seeds, at_start, at_end)
        cached = self._closures.get(key)
        if cached is not None:
            return cached
        seen: set[int] = set()
        stack = list(seeds)
        matched = False
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            op, arg = self.program[pc]
            if op == _SPLIT:
                assert isinstance(arg, tuple)
                stack.extend(arg)
            elif op == _JMP:
                assert isinstance(arg, int)
                stack.append(arg)
            elif op == _BOL:
                if at_start:
                    stack.append(pc + 1)
            elif op == _EOL:
                if at_end:
                    stack.append(pc + 1)
            elif op == _MATCH:
                matched = True
        consumers = frozenset(pc for pc in seen if self.program[pc][0] == _PRED)
        result = (consumers, matched)
        if len(self._closures) < _MAX_CACHED_TRANSITIONS:
            self._closures[key] = result
        return result

    def search(self, text: str, charge: Callable[[int], None]) -> bool:
        """True when the pattern matches somewhere in text (RE2 search semantics).

        ``charge`` is called with the work done so the caller can stop a
        runaway evaluation; it raises ExpressionError when the budget is spent.
        """
        start = frozenset({0})
        states: frozenset[int] = start
        n = len(text)
        for i in range(n + 1):
            consumers, matched = self._closure(states | start, i == 0, i == n)
            if matched:
                return True
            if i == n:
                return False
            charge(len(consumers) + 1)
            ch = text[i]
            key = (consumers, ch)
            following = self._steps.get(key)
            if following is None:
                following = frozenset(pc + 1 for pc in consumers if self._pred(pc)(ch))
                if len(self._steps) < _MAX_CACHED_TRANSITIONS:
                    self._steps[key] = following
            states = following
        return False

    def _pred(self, pc: int) -> Pred:
        arg = self.program[pc][1]
        assert callable(arg)
        return arg
