"""Tokenizer and parser for the expr-lang subset used in conditions.

Called only by common/expr/__init__.py (compile_expression). Turns the source
text into a small tree of frozen nodes, checking every static limit on the way
(source length, nesting depth, node count, known functions and their arity) so
that evaluation never meets a malformed tree. No Python code is ever generated
from user text.

What may be called depends on the Dialect: AnalysisTemplate conditions know
only the global functions; notification `when` conditions also know Argo's
namespaced helpers (`time.Now()`, `strings.ToUpper(...)`, `time.Minute`) and a
fixed set of method names on the evaluator's own time values (`.Sub(...)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.expr._common import (
    INT_MAX,
    MAX_DEPTH,
    MAX_NODES,
    MAX_SOURCE_LENGTH,
    ExpressionError,
    is_ascii_digits,
)

MSG_TOO_LONG = "expression is {length} characters long; the limit is {limit}"
MSG_UNEXPECTED = 'unexpected token "{text}" at column {pos}'
MSG_UNEXPECTED_END = "unexpected end of expression at column {pos}"
MSG_BAD_CHAR = 'unexpected character "{text}" at column {pos}'
MSG_UNTERMINATED = "unterminated string starting at column {pos}"
MSG_BAD_ESCAPE = 'invalid escape "{text}" in string at column {pos}'
MSG_BAD_NUMBER = 'invalid number "{text}" at column {pos}'
MSG_INT_TOO_BIG = 'integer literal "{text}" at column {pos} does not fit in 64 bits'
MSG_TOO_DEEP = "expression is nested too deeply (limit {limit}) at column {pos}"
MSG_TOO_MANY_NODES = "expression has too many parts (limit {limit})"
MSG_UNKNOWN_FUNCTION = 'unknown function "{name}" at column {pos}'
MSG_ARITY = 'function "{name}" takes {expected} argument(s), got {got}, at column {pos}'
MSG_NOT_CALLABLE = "only named functions can be called, at column {pos}"
MSG_POINTER_OUTSIDE = '"#" used outside a predicate at column {pos}'
MSG_UNKNOWN_MEMBER = 'unknown name "{namespace}.{name}" at column {pos}'
MSG_NAMESPACE_ALONE = '"{name}" at column {pos} is a set of functions, not a value: write {name}.<name>'
MSG_NOT_A_CALL = '"{name}" at column {pos} is a constant, not a function'
MSG_NOT_A_CONSTANT = '"{name}" at column {pos} is a function: call it with ( )'
MSG_RESERVED_NAME = (
    'name "{name}" at column {pos} is not allowed (names starting with "__" are reserved)'
)

# --------------------------------------------------------------------------- tokens

NUMBER, STRING, NAME, OP, EOF = "number", "string", "name", "op", "eof"

# Longest first so that "**" wins over "*", "?." over "?", and so on.
_OPERATORS = (
    "?.", "??", "**", "==", "!=", "<=", ">=", "&&", "||", "..",
    "+", "-", "*", "/", "%", "^", "<", ">", "!", "?", ":", ",", ".",
    "(", ")", "[", "]", "{", "}", "#",
)  # fmt: skip
_WORD_OPERATORS = frozenset(
    {"and", "or", "not", "in", "matches", "contains", "startsWith", "endsWith"}
)
_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "0": "\0",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}



@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int
    value: Any = None


def _name_start(ch: str) -> bool:
    return ch == "_" or ch == "$" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _name_part(ch: str) -> bool:
    return _name_start(ch) or ("0" <= ch <= "9")


def tokenize(source: str) -> list[Token]:
    """Split source into tokens; raises ExpressionError at the first bad one."""
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in " \t\r\n":
            i += 1
        elif "0" <= ch <= "9":
            i = _number(source, i, tokens)
        elif ch in "'\"`":
            i = _string(source, i, tokens)
        elif _name_start(ch):
            start = i
            while i < n and _name_part(source[i]):
                i += 1
            word = source[start:i]
            kind = OP if word in _WORD_OPERATORS else NAME
            tokens.append(Token(kind=kind, text=word, pos=start))
        else:
            for op in _OPERATORS:
                if source.startswith(op, i):
                    tokens.append(Token(kind=OP, text=op, pos=i))
                    i += len(op)
                    break
            else:
                raise ExpressionError(MSG_BAD_CHAR.format(text=ch, pos=i), i)
    tokens.append(Token(kind=EOF, text="", pos=n))
    return tokens


def _number(source: str, start: int, tokens: list[Token]) -> int:
    i, n = start, len(source)
    is_float = False
    if source.startswith(("0x", "0X", "0b", "0B", "0o", "0O"), i):
        i += 2
        while i < n and (source[i].isalnum() or source[i] == "_"):
            i += 1
        text = source[start:i]
        try:
            value: int | float = int(text.replace("_", ""), 0)
        except ValueError:
            raise ExpressionError(MSG_BAD_NUMBER.format(text=text, pos=start), start) from None
    else:
        while i < n and (is_ascii_digits(source[i]) or source[i] == "_"):
            i += 1
        # "1..3" is a range, not a float followed by ".3".
        if i + 1 < n and source[i] == "." and is_ascii_digits(source[i + 1]):
            is_float = True
            i += 1
            while i < n and (is_ascii_digits(source[i]) or source[i] == "_"):
                i += 1
        if i < n and source[i] in "eE":
            j = i + 1
            if j < n and source[j] in "+-":
                j += 1
            if j < n and is_ascii_digits(source[j]):
                is_float = True
                i = j
                while i < n and is_ascii_digits(source[i]):
                    i += 1
        text = source[start:i]
        if i < n and _name_part(source[i]):
            bad_end = i
            while bad_end < n and _name_part(source[bad_end]):
                bad_end += 1
            text = source[start:bad_end]
            raise ExpressionError(MSG_BAD_NUMBER.format(text=text, pos=start), start)
        digits = text.replace("_", "")
        if "__" in text or text.endswith("_"):
            raise ExpressionError(MSG_BAD_NUMBER.format(text=text, pos=start), start)
        # Both conversions are bounded: the source is at most MAX_SOURCE_LENGTH.
        value = float(digits) if is_float else int(digits)
    if isinstance(value, int) and value > INT_MAX:
        raise ExpressionError(MSG_INT_TOO_BIG.format(text=text, pos=start), start)
    tokens.append(Token(kind=NUMBER, text=text, pos=start, value=value))
    return i


def _string(source: str, start: int, tokens: list[Token]) -> int:
    quote = source[start]
    i, n = start + 1, len(source)
    parts: list[str] = []
    while True:
        if i >= n:
            raise ExpressionError(MSG_UNTERMINATED.format(pos=start), start)
        ch = source[i]
        if ch == quote:
            i += 1
            break
        if ch == "\\" and quote != "`":
            if i + 1 >= n:
                raise ExpressionError(MSG_UNTERMINATED.format(pos=start), start)
            esc = source[i + 1]
            if esc in _SIMPLE_ESCAPES:
                parts.append(_SIMPLE_ESCAPES[esc])
                i += 2
            elif esc in _HEX_ESCAPES:
                width = _HEX_ESCAPES[esc]
                digits = source[i + 2 : i + 2 + width]
                try:
                    if len(digits) != width:
                        raise ValueError(digits)
                    parts.append(chr(int(digits, 16)))
                except ValueError:
                    text = source[i : i + 2 + width]
                    raise ExpressionError(MSG_BAD_ESCAPE.format(text=text, pos=i), i) from None
                i += 2 + width
            else:
                raise ExpressionError(MSG_BAD_ESCAPE.format(text="\\" + esc, pos=i), i)
        else:
            parts.append(ch)
            i += 1
    tokens.append(Token(kind=STRING, text=source[start:i], pos=start, value="".join(parts)))
    return i


# --------------------------------------------------------------------------- tree


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class Name(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Pointer(Node):
    """`#`: the element a predicate is looking at."""


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit(Node):
    pairs: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Ternary(Node):
    cond: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class Member(Node):
    """`obj.name`, `obj[key]`, and their nil-safe `?.` forms."""

    obj: Node
    key: Node
    optional: bool


@dataclass(frozen=True, slots=True)
class Slice(Node):
    obj: Node
    low: Node | None
    high: Node | None


@dataclass(frozen=True, slots=True)
class Constant(Node):
    """A dialect constant such as `time.Minute`, resolved by the runtime's table."""

    name: str


@dataclass(frozen=True, slots=True)
class MethodCall(Node):
    """`obj.Name(args)`: only on the evaluator's own values, from a fixed table."""

    obj: Node
    name: str
    args: tuple[Node, ...]
    optional: bool


@dataclass(frozen=True, slots=True)
class Closure(Node):
    body: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


def children(node: Node) -> tuple[Node, ...]:
    """Direct sub-nodes, for the iterative limit checks."""
    if isinstance(node, ListLit):
        return node.items
    if isinstance(node, MapLit):
        return tuple(part for pair in node.pairs for part in pair)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Ternary):
        return (node.cond, node.then, node.otherwise)
    if isinstance(node, Member):
        return (node.obj, node.key)
    if isinstance(node, Slice):
        return tuple(part for part in (node.obj, node.low, node.high) if part is not None)
    if isinstance(node, Closure):
        return (node.body,)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, MethodCall):
        return (node.obj, *node.args)
    return ()


# --------------------------------------------------------------------------- functions

# name -> (min args, max args or None for variadic); argument index that is a
# predicate (parsed as a closure with `#`), or None.
FUNCTIONS: dict[str, tuple[int, int | None, int | None]] = {
    "len": (1, 1, None),
    "abs": (1, 1, None),
    "max": (1, None, None),
    "min": (1, None, None),
    "sum": (1, 1, None),
    "mean": (1, 1, None),
    "median": (1, 1, None),
    "first": (1, 1, None),
    "last": (1, 1, None),
    "int": (1, 1, None),
    "float": (1, 1, None),
    "string": (1, 1, None),
    "lower": (1, 1, None),
    "upper": (1, 1, None),
    "trim": (1, 2, None),
    "trimPrefix": (2, 2, None),
    "trimSuffix": (2, 2, None),
    "round": (1, 1, None),
    "floor": (1, 1, None),
    "ceil": (1, 1, None),
    "all": (2, 2, 1),
    "any": (2, 2, 1),
    "none": (2, 2, 1),
    "one": (2, 2, 1),
    "filter": (2, 2, 1),
    "map": (2, 2, 1),
    "count": (1, 2, 1),
    "find": (2, 2, 1),
    "findIndex": (2, 2, 1),
    # Argo Rollouts' additions (utils/evaluate/evaluate.go).
    "isNaN": (1, 1, None),
    "isInf": (1, 1, None),
    "asInt": (1, 1, None),
    "asFloat": (1, 1, None),
    "isNil": (1, 1, None),
    "default": (2, 2, None),
}


Spec = tuple[int, int | None, int | None]


@dataclass(frozen=True, eq=False)
class Dialect:
    """What one kind of condition may call: its functions, namespaces and methods.

    ``namespaces`` maps e.g. "time" to its members: a Spec for a function, None
    for a constant. ``methods`` are the method names the runtime's value tables
    know, with their arity. The analysis dialect has no namespaces and no
    methods, so AnalysisTemplate conditions parse exactly as before.
    """

    name: str
    functions: Mapping[str, Spec]
    namespaces: Mapping[str, Mapping[str, Spec | None]] = field(default_factory=dict)
    methods: Mapping[str, Spec] = field(default_factory=dict)


ANALYSIS = Dialect(name="analysis", functions=FUNCTIONS)

# Argo Rollouts' analysis-only helpers read the env's `result`; they mean nothing
# in a notification condition, so that dialect leaves them out.
_ANALYSIS_ONLY = frozenset({"isNil", "default"})
_ONE: Spec = (1, 1, None)
_NONE: Spec = (0, 0, None)
_TWO: Spec = (2, 2, None)

NOTIFICATIONS = Dialect(
    name="notifications",
    functions={name: spec for name, spec in FUNCTIONS.items() if name not in _ANALYSIS_ONLY},
    namespaces={
        "time": {
            "Now": _NONE,
            # Argo's time.Parse takes one RFC 3339 string; (layout, value) is also
            # accepted for the RFC 3339 layouts, as Go's time.Parse spells it.
            "Parse": (1, 2, None),
            "Duration": _ONE,
            "Nanosecond": None,
            "Microsecond": None,
            "Millisecond": None,
            "Second": None,
            "Minute": None,
            "Hour": None,
            "RFC3339": None,
            "RFC3339Nano": None,
        },
        "strings": {
            "ToUpper": _ONE,
            "ToLower": _ONE,
            "TrimSpace": _ONE,
            "Contains": _TWO,
            "HasPrefix": _TWO,
            "HasSuffix": _TWO,
            "Split": _TWO,
            "ReplaceAll": (3, 3, None),
        },
        "sync": {"GetInfoItem": _TWO},
    },
    methods={
        # time values
        "Sub": _ONE,
        "Add": _ONE,
        "Before": _ONE,
        "After": _ONE,
        "Equal": _ONE,
        "Unix": _NONE,
        "UnixMilli": _NONE,
        "IsZero": _NONE,
        # durations
        "Hours": _NONE,
        "Minutes": _NONE,
        "Seconds": _NONE,
        "Milliseconds": _NONE,
        "Nanoseconds": _NONE,
        "Abs": _NONE,
    },
)

# --------------------------------------------------------------------------- parser

# Binding powers as in expr-lang's parser (higher binds tighter).
_BINARY: dict[str, tuple[int, bool]] = {
    "or": (10, False), "||": (10, False),
    "and": (15, False), "&&": (15, False),
    "==": (20, False), "!=": (20, False), "<": (20, False), ">": (20, False),
    "<=": (20, False), ">=": (20, False), "in": (20, False), "matches": (20, False),
    "contains": (20, False), "startsWith": (20, False), "endsWith": (20, False),
    "+": (30, False), "-": (30, False),
    "*": (60, False), "/": (60, False), "%": (60, False),
    "**": (100, True), "^": (100, True),
    "??": (500, False),
}  # fmt: skip
_UNARY: dict[str, int] = {"not": 50, "!": 50, "-": 90, "+": 90}
# Operators that may follow `not` (`x not in list`).
_NEGATABLE = frozenset({"in", "matches", "contains", "startsWith", "endsWith"})
_CANONICAL = {"and": "&&", "or": "||", "not": "!", "^": "**"}


class _Parser:
    def __init__(self, tokens: list[Token], dialect: Dialect) -> None:
        self.tokens = tokens
        self.dialect = dialect
        self.index = 0
        self.nesting = 0
        self.closures = 0

    # -- helpers

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != EOF:
            self.index += 1
        return token

    def is_op(self, text: str, offset: int = 0) -> bool:
        token = self.tokens[min(self.index + offset, len(self.tokens) - 1)]
        return token.kind == OP and token.text == text

    def expect(self, text: str) -> Token:
        if not self.is_op(text):
            self.fail(self.current)
        return self.advance()

    @staticmethod
    def fail(token: Token) -> None:
        if token.kind == EOF:
            raise ExpressionError(MSG_UNEXPECTED_END.format(pos=token.pos), token.pos)
        raise ExpressionError(MSG_UNEXPECTED.format(text=token.text, pos=token.pos), token.pos)

    def enter(self, token: Token) -> None:
        # Bounds the parser's own recursion, before any deep tree exists.
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise ExpressionError(MSG_TOO_DEEP.format(limit=MAX_DEPTH, pos=token.pos), token.pos)

    # -- grammar

    def parse(self) -> Node:
        node = self.expression(0)
        if self.current.kind != EOF:
            self.fail(self.current)
        return node

    def expression(self, min_power: int) -> Node:
        self.enter(self.current)
        left = self.unary()
        while True:
            token = self.current
            if token.kind != OP:
                break
            negated = False
            op = token.text
            if op == "not" and self.tokens[self.index + 1].text in _NEGATABLE:
                negated = True
                op = self.tokens[self.index + 1].text
            if op not in _BINARY:
                break
            power, right_assoc = _BINARY[op]
            if power < min_power:
                break
            self.advance()
            if negated:
                self.advance()
            right = self.expression(power if right_assoc else power + 1)
            left = Binary(pos=token.pos, op=_CANONICAL.get(op, op), left=left, right=right)
            if negated:
                left = Unary(pos=token.pos, op="!", operand=left)
        if min_power == 0 and self.is_op("?"):
            token = self.advance()
            then = self.expression(0)
            self.expect(":")
            otherwise = self.expression(0)
            left = Ternary(pos=token.pos, cond=left, then=then, otherwise=otherwise)
        self.nesting -= 1
        return left

    def unary(self) -> Node:
        token = self.current
        if token.kind == OP and token.text in _UNARY:
            self.advance()
            operand = self.expression(_UNARY[token.text])
            return Unary(pos=token.pos, op=_CANONICAL.get(token.text, token.text), operand=operand)
        return self.postfix(self.primary())

    def primary(self) -> Node:
        token = self.advance()
        if token.kind in (NUMBER, STRING):
            return Literal(pos=token.pos, value=token.value)
        if token.kind == NAME:
            return self.name(token)
        if token.kind == OP:
            if token.text == "(":
                node = self.expression(0)
                self.expect(")")
                return node
            if token.text == "[":
                return ListLit(pos=token.pos, items=self.sequence("]"))
            if token.text == "{":
                return self.map_literal(token)
            if token.text == "#":
                if self.closures == 0:
                    raise ExpressionError(MSG_POINTER_OUTSIDE.format(pos=token.pos), token.pos)
                return Pointer(pos=token.pos)
            if token.text == "." and self.closures > 0 and self.current.kind == NAME:
                # `.field` inside a predicate is short for `#.field`.
                field = self.advance()
                self.check_name(field)
                key = Literal(pos=field.pos, value=field.text)
                return Member(pos=token.pos, obj=Pointer(pos=token.pos), key=key, optional=False)
        self.fail(token)
        raise AssertionError("unreachable")  # fail() always raises

    def name(self, token: Token) -> Node:
        self.check_name(token)
        if token.text in ("true", "false"):
            return Literal(pos=token.pos, value=token.text == "true")
        if token.text == "nil":
            return Literal(pos=token.pos, value=None)
        members = self.dialect.namespaces.get(token.text)
        if members is not None:
            return self.qualified(token, members)
        if self.is_op("("):
            return self.call(token)
        return Name(pos=token.pos, name=token.text)

    def qualified(self, token: Token, members: Mapping[str, Spec | None]) -> Node:
        """`time.Now()`, `time.Minute`: resolved here, never looked up in the env."""
        if not self.is_op("."):
            raise ExpressionError(
                MSG_NAMESPACE_ALONE.format(name=token.text, pos=token.pos), token.pos
            )
        self.advance()
        member = self.advance()
        if member.kind != NAME:
            self.fail(member)
        qualified = f"{token.text}.{member.text}"
        if member.text not in members:
            raise ExpressionError(
                MSG_UNKNOWN_MEMBER.format(namespace=token.text, name=member.text, pos=member.pos),
                member.pos,
            )
        spec = members[member.text]
        if spec is None:
            if self.is_op("("):
                raise ExpressionError(
                    MSG_NOT_A_CALL.format(name=qualified, pos=token.pos), token.pos
                )
            return Constant(pos=token.pos, name=qualified)
        if not self.is_op("("):
            raise ExpressionError(
                MSG_NOT_A_CONSTANT.format(name=qualified, pos=token.pos), token.pos
            )
        return Call(pos=token.pos, name=qualified, args=self.arguments(token, qualified, spec))

    @staticmethod
    def check_name(token: Token) -> None:
        if token.text.startswith("__"):
            raise ExpressionError(
                MSG_RESERVED_NAME.format(name=token.text, pos=token.pos), token.pos
            )

    def call(self, token: Token) -> Node:
        spec = self.dialect.functions.get(token.text)
        if spec is None:
            raise ExpressionError(
                MSG_UNKNOWN_FUNCTION.format(name=token.text, pos=token.pos), token.pos
            )
        return Call(pos=token.pos, name=token.text, args=self.arguments(token, token.text, spec))

    def arguments(self, token: Token, name: str, spec: Spec) -> tuple[Node, ...]:
        """The parenthesised arguments of a call, checked against its arity."""
        low, high, predicate_at = spec
        self.expect("(")
        args: list[Node] = []
        while not self.is_op(")"):
            if args:
                self.expect(",")
                if self.is_op(")"):  # trailing comma
                    break
            if len(args) == predicate_at:
                args.append(self.closure())
            else:
                args.append(self.expression(0))
        self.expect(")")
        if len(args) < low or (high is not None and len(args) > high):
            expected = str(low) if low == high else f"{low} to {high or 'any number of'}"
            raise ExpressionError(
                MSG_ARITY.format(name=name, expected=expected, got=len(args), pos=token.pos),
                token.pos,
            )
        return tuple(args)

    def closure(self) -> Node:
        start = self.current
        braced = self.is_op("{")
        if braced:
            self.advance()
        self.closures += 1
        body = self.expression(0)
        self.closures -= 1
        if braced:
            self.expect("}")
        return Closure(pos=start.pos, body=body)

    def sequence(self, closing: str) -> tuple[Node, ...]:
        items: list[Node] = []
        while not self.is_op(closing):
            if items:
                self.expect(",")
                if self.is_op(closing):
                    break
            items.append(self.expression(0))
        self.expect(closing)
        return tuple(items)

    def map_literal(self, start: Token) -> Node:
        pairs: list[tuple[Node, Node]] = []
        while not self.is_op("}"):
            if pairs:
                self.expect(",")
                if self.is_op("}"):
                    break
            key_token = self.current
            key: Node
            if key_token.kind in (NAME, STRING, NUMBER):
                self.advance()
                key = Literal(pos=key_token.pos, value=key_token.value)
                if key_token.kind == NAME:
                    key = Literal(pos=key_token.pos, value=key_token.text)
            elif self.is_op("("):
                self.advance()
                key = self.expression(0)
                self.expect(")")
            else:
                self.fail(key_token)
                raise AssertionError("unreachable")
            self.expect(":")
            pairs.append((key, self.expression(0)))
        self.expect("}")
        return MapLit(pos=start.pos, pairs=tuple(pairs))

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.current
            if token.kind != OP:
                return node
            if token.text in (".", "?."):
                self.advance()
                optional = token.text == "?."
                if optional and self.is_op("["):
                    node = self.index_or_slice(node, optional=True)
                    continue
                field = self.advance()
                if field.kind not in (NAME, OP) or not _name_start(field.text[:1]):
                    self.fail(field)
                self.check_name(field)
                if self.is_op("("):
                    spec = self.dialect.methods.get(field.text)
                    if spec is None:
                        raise ExpressionError(MSG_NOT_CALLABLE.format(pos=field.pos), field.pos)
                    args = self.arguments(field, field.text, spec)
                    node = MethodCall(
                        pos=field.pos, obj=node, name=field.text, args=args, optional=optional
                    )
                    continue
                key = Literal(pos=field.pos, value=field.text)
                node = Member(pos=token.pos, obj=node, key=key, optional=optional)
            elif token.text == "[":
                node = self.index_or_slice(node, optional=False)
            elif token.text == "(":
                raise ExpressionError(MSG_NOT_CALLABLE.format(pos=token.pos), token.pos)
            else:
                return node

    def index_or_slice(self, node: Node, *, optional: bool) -> Node:
        start = self.expect("[")
        low: Node | None = None
        if not self.is_op(":"):
            low = self.expression(0)
            if self.is_op("]"):
                self.advance()
                return Member(pos=start.pos, obj=node, key=low, optional=optional)
        self.expect(":")
        high = None if self.is_op("]") else self.expression(0)
        self.expect("]")
        return Slice(pos=start.pos, obj=node, low=low, high=high)


def check_limits(root: Node) -> None:
    """Reject trees that are too deep or too big, without recursing."""
    count = 0
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ExpressionError(MSG_TOO_MANY_NODES.format(limit=MAX_NODES), None)
        if depth > MAX_DEPTH:
            raise ExpressionError(MSG_TOO_DEEP.format(limit=MAX_DEPTH, pos=node.pos), node.pos)
        stack.extend((child, depth + 1) for child in children(node))


def parse(source: str, dialect: Dialect = ANALYSIS) -> Node:
    """Source text to a checked tree; raises ExpressionError."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(
            MSG_TOO_LONG.format(length=len(source), limit=MAX_SOURCE_LENGTH), MAX_SOURCE_LENGTH
        )
    root = _Parser(tokenize(source), dialect).parse()
    check_limits(root)
    return root
