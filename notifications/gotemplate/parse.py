"""Lexer and parser of Go's text/template syntax into a small node tree.

Follows text/template/parse: actions between {{ and }}, trim markers `{{- ` and ` -}}`,
comments `{{/* */}}`, if/else if/else, range (with break/continue and else), with,
define/template/block, pipelines, parenthesised commands, variables, fields and
literals. Function names and variables are checked here, as Go checks them at parse
time. Called by notifications.gotemplate.compile_template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from notifications.gotemplate.errors import TemplateError, position

MSG_UNCLOSED_ACTION = "unclosed action"
MSG_UNCLOSED_COMMENT = "unclosed comment"
MSG_COMMENT_END = "comment ends before closing delimiter"
MSG_UNTERMINATED_STRING = "unterminated quoted string"
MSG_UNTERMINATED_RAW = "unterminated raw quoted string"
MSG_BAD_CHAR = "unrecognized character in action: {ch!r}"
MSG_BAD_NUMBER = "bad number syntax: {text!r}"
MSG_BAD_ESCAPE = "bad escape in string: {text}"
MSG_UNDEFINED_FUNC = 'function "{name}" not defined'
MSG_UNDEFINED_VAR = 'undefined variable "{name}"'
MSG_UNEXPECTED = "unexpected {what} in {context}"
MSG_MISSING_VALUE = "missing value for {context}"
MSG_NON_EXEC = "non executable command in pipeline stage {n}"
MSG_DEPTH = "template nesting exceeds max depth {depth}"
MSG_OUTSIDE_RANGE = "{{{{{kw}}}}} outside {{{{range}}}}"
MSG_EOF = "unexpected EOF"
MSG_DEFINE_TOP = "{{define}} is allowed only at the top level"
MSG_TEMPLATE_NAME = "expected a quoted template name in {context}"
MSG_RANGE_VARS = "too many declarations in {context}"
MSG_UNEXPECTED_DOT = "unexpected . after term {term!r}"

KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_WS = " \t\r\n"


@dataclass
class Tok:
    kind: str  # text, left, right, ident, field, var, dot, string, number, bool, nil, (, ), |, :=, =, ",", kw
    val: Any
    pos: int
    spaced: bool = False
    src: str = ""


# ---- nodes -------------------------------------------------------------------------


@dataclass
class Node:
    pos: int
    src: str


@dataclass
class Text(Node):
    text: str = ""


@dataclass
class Literal(Node):  # string, number, bool, nil
    value: Any = None


@dataclass
class Dot(Node):
    pass


@dataclass
class FieldRef(Node):
    names: list[str] = field(default_factory=list)


@dataclass
class VarRef(Node):
    name: str = ""
    names: list[str] = field(default_factory=list)


@dataclass
class FuncRef(Node):
    name: str = ""


@dataclass
class Chain(Node):
    node: Node | None = None
    names: list[str] = field(default_factory=list)


@dataclass
class Command(Node):
    args: list[Node] = field(default_factory=list)


@dataclass
class Pipe(Node):
    decl: list[str] = field(default_factory=list)
    assign: bool = False
    cmds: list[Command] = field(default_factory=list)


@dataclass
class Action(Node):
    pipe: Pipe | None = None


@dataclass
class Branch(Node):  # if / with / range
    kind: str = ""
    pipe: Pipe | None = None
    body: list[Node] = field(default_factory=list)
    else_body: list[Node] = field(default_factory=list)


@dataclass
class Call(Node):  # {{template "name" pipe}}
    name: str = ""
    pipe: Pipe | None = None


@dataclass
class Jump(Node):  # break / continue
    kind: str = ""


# ---- lexer -------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


class Lexer:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.toks: list[Tok] = []

    def fail(self, msg: str, pos: int) -> TemplateError:
        line, col = position(self.text, pos)
        return TemplateError(msg, name=self.name, line=line, col=col)

    def run(self) -> list[Tok]:
        text = self.text
        n = len(text)
        pos = 0
        trim_next = False
        while pos <= n:
            i = text.find("{{", pos)
            end = n if i < 0 else i
            chunk = text[pos:end]
            if trim_next:
                chunk = chunk.lstrip(_WS)
            trim_left = i >= 0 and text[i + 2 : i + 3] == "-" and text[i + 3 : i + 4] in tuple(_WS)
            if trim_left:
                chunk = chunk.rstrip(_WS)
            if chunk:
                self.toks.append(Tok("text", chunk, pos))
            if i < 0:
                break
            start = i + (4 if trim_left else 2)
            if text.startswith("/*", start):
                close = text.find("*/", start + 2)
                if close < 0:
                    raise self.fail(MSG_UNCLOSED_COMMENT, i)
                after = close + 2
                if text.startswith("}}", after):
                    pos, trim_next = after + 2, False
                else:
                    k = after
                    while k < n and text[k] in _WS:
                        k += 1
                    if k > after and text.startswith("-}}", k):
                        pos, trim_next = k + 3, True
                    else:
                        raise self.fail(MSG_COMMENT_END, i)
                continue
            self.toks.append(Tok("left", "{{", i))
            pos, trim_next = self.action(start, i)
        self.toks.append(Tok("eof", None, n))
        return self.toks

    def action(self, p: int, open_pos: int) -> tuple[int, bool]:
        text = self.text
        n = len(text)
        spaced = True
        depth = 0
        while True:
            if p >= n:
                raise self.fail(MSG_UNCLOSED_ACTION, open_pos)
            ch = text[p]
            if text.startswith("}}", p):
                self.toks.append(Tok("right", "}}", p))
                return p + 2, False
            if ch in _WS:
                q = p
                while q < n and text[q] in _WS:
                    q += 1
                if text.startswith("-}}", q):
                    self.toks.append(Tok("right", "}}", q))
                    return q + 3, True
                p, spaced = q, True
                continue
            start = p
            kind: str
            val: Any
            if ch == '"':
                p, val = self.quoted(p)
                kind = "string"
            elif ch == "`":
                close = text.find("`", p + 1)
                if close < 0:
                    raise self.fail(MSG_UNTERMINATED_RAW, p)
                kind, val, p = "string", text[p + 1 : close], close + 1
            elif ch == "'":
                p, val = self.char(p)
                kind = "number"
            elif ch == "$":
                q = p + 1
                while q < n and (text[q].isalnum() or text[q] == "_"):
                    q += 1
                kind, val, p = "var", text[p:q], q
            elif ch == "." and p + 1 < n and (text[p + 1].isalpha() or text[p + 1] == "_"):
                q = p + 1
                while q < n and (text[q].isalnum() or text[q] == "_"):
                    q += 1
                kind, val, p = "field", text[p + 1 : q], q
            elif ch.isdigit() or (ch in "+-." and p + 1 < n and text[p + 1].isdigit()):
                p, val = self.number(p)
                kind = "number"
            elif ch == ".":
                kind, val, p = "dot", ".", p + 1
            elif ch.isalpha() or ch == "_":
                q = p
                while q < n and (text[q].isalnum() or text[q] == "_"):
                    q += 1
                word = text[p:q]
                p = q
                if word in KEYWORDS:
                    kind, val = "kw", word
                elif word in ("true", "false"):
                    kind, val = "bool", word == "true"
                elif word == "nil":
                    kind, val = "nil", None
                else:
                    kind, val = "ident", word
            elif ch == "(":
                depth += 1
                kind, val, p = "(", ch, p + 1
            elif ch == ")":
                depth -= 1
                kind, val, p = ")", ch, p + 1
            elif ch in "|,=":
                kind, val, p = ch, ch, p + 1
            elif text.startswith(":=", p):
                kind, val, p = ":=", ":=", p + 2
            else:
                raise self.fail(MSG_BAD_CHAR.format(ch=ch), p)
            self.toks.append(Tok(kind, val, start, spaced, text[start:p]))
            spaced = False

    def quoted(self, p: int) -> tuple[int, str]:
        text = self.text
        out: list[str] = []
        q = p + 1
        while True:
            if q >= len(text) or text[q] == "\n":
                raise self.fail(MSG_UNTERMINATED_STRING, p)
            ch = text[q]
            if ch == '"':
                return q + 1, "".join(out)
            if ch == "\\":
                q, dec = self.escape(q)
                out.append(dec)
                continue
            out.append(ch)
            q += 1

    def escape(self, q: int) -> tuple[int, str]:
        text = self.text
        nxt = text[q + 1 : q + 2]
        if nxt in _ESCAPES and nxt != "0":
            return q + 2, _ESCAPES[nxt]
        widths = {"x": 2, "u": 4, "U": 8}
        if nxt in widths:
            digits = text[q + 2 : q + 2 + widths[nxt]]
            try:
                return q + 2 + widths[nxt], chr(int(digits, 16))
            except ValueError:
                raise self.fail(MSG_BAD_ESCAPE.format(text=text[q : q + 2 + widths[nxt]]), q) from None
        if nxt.isdigit():
            digits = text[q + 1 : q + 4]
            try:
                return q + 4, chr(int(digits, 8))
            except ValueError:
                raise self.fail(MSG_BAD_ESCAPE.format(text=text[q : q + 4]), q) from None
        raise self.fail(MSG_BAD_ESCAPE.format(text=text[q : q + 2]), q)

    def char(self, p: int) -> tuple[int, int]:
        text = self.text
        if text[p + 1 : p + 2] == "\\":
            q, dec = self.escape(p + 1)
        else:
            q, dec = p + 2, text[p + 1 : p + 2]
        if text[q : q + 1] != "'" or len(dec) != 1:
            raise self.fail(MSG_UNTERMINATED_STRING, p)
        return q + 1, ord(dec)

    def number(self, p: int) -> tuple[int, int | float]:
        text = self.text
        q = p
        if text[q] in "+-":
            q += 1
        while q < len(text) and (text[q].isalnum() or text[q] in "._" or
                                 (text[q] in "+-" and text[q - 1] in "eEpP")):
            q += 1
        raw = text[p:q]
        body = raw.replace("_", "")
        try:
            low = body.lower().lstrip("+-")
            if low.startswith(("0x", "0o", "0b")) and "." not in low and "p" not in low:
                return q, int(body, 0)
            if "." not in body and "e" not in body.lower():
                if len(low) > 1 and low.startswith("0"):
                    return q, int(body.replace("0", "0o", 1) if not body.startswith(("+", "-")) else body[0] + "0o" + body[2:], 0)
                return q, int(body, 10)
            return q, float(body)
        except ValueError:
            raise self.fail(MSG_BAD_NUMBER.format(text=raw), p) from None


# ---- parser ------------------------------------------------------------------------


class Parser:
    def __init__(self, name: str, text: str, *, funcs: Callable[[str], bool], max_depth: int) -> None:
        self.name = name
        self.text = text
        self.toks = Lexer(name, text).run()
        self.i = 0
        self.has_func = funcs
        self.max_depth = max_depth
        self.depth = 0
        self.range_depth = 0
        self.vars: list[str] = ["$"]
        self.defines: dict[str, list[Node]] = {}

    # helpers
    def fail(self, msg: str, pos: int) -> TemplateError:
        line, col = position(self.text, pos)
        return TemplateError(msg, name=self.name, line=line, col=col)

    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, kind: str, context: str) -> Tok:
        tok = self.next()
        if tok.kind != kind:
            raise self.unexpected(tok, context)
        return tok

    def unexpected(self, tok: Tok, context: str) -> TemplateError:
        if tok.kind == "eof":
            return self.fail(MSG_EOF, tok.pos)
        what = f"<{tok.val}>" if tok.kind == "kw" else repr(tok.src or tok.val)
        return self.fail(MSG_UNEXPECTED.format(what=what, context=context), tok.pos)

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.fail(MSG_DEPTH.format(depth=self.max_depth), pos)

    # grammar
    def parse(self) -> tuple[list[Node], dict[str, list[Node]]]:
        body, stop = self.item_list(top=True)
        if stop is not None:
            raise self.unexpected(stop, "input")
        return body, self.defines

    def item_list(self, *, top: bool = False) -> tuple[list[Node], Tok | None]:
        """Nodes until {{end}} / {{else}} (returned as the stop token) or EOF."""
        nodes: list[Node] = []
        while True:
            tok = self.peek()
            if tok.kind == "eof":
                if not top:
                    raise self.fail(MSG_EOF, tok.pos)
                return nodes, None
            if tok.kind == "text":
                self.next()
                nodes.append(Text(tok.pos, "", tok.val))
                continue
            left = self.next()
            kw = self.peek()
            if kw.kind == "kw" and kw.val in ("end", "else"):
                if top:
                    raise self.unexpected(kw, "input")
                return nodes, kw
            if kw.kind == "kw" and kw.val == "define":
                if not top:
                    raise self.fail(MSG_DEFINE_TOP, kw.pos)
                self.define()
                continue
            nodes.append(self.action(left))

    def action(self, left: Tok) -> Node:
        tok = self.peek()
        if tok.kind == "kw":
            self.next()
            if tok.val in ("if", "with", "range"):
                return self.branch(tok)
            if tok.val in ("template", "block"):
                return self.template(tok)
            if tok.val in ("break", "continue"):
                if self.range_depth == 0:
                    raise self.fail(MSG_OUTSIDE_RANGE.format(kw=tok.val), tok.pos)
                self.expect("right", tok.val)
                return Jump(tok.pos, tok.val, tok.val)
            raise self.unexpected(tok, "command")
        pipe = self.pipeline("command", end="right", decl_max=1)
        return Action(pipe.pos, pipe.src, pipe)

    def define(self) -> None:
        kw = self.next()
        name_tok = self.next()
        if name_tok.kind != "string":
            raise self.fail(MSG_TEMPLATE_NAME.format(context="define clause"), name_tok.pos)
        self.expect("right", "define clause")
        self.named_body(kw, name=name_tok.val, context="define clause")

    def named_body(self, kw: Tok, *, name: str, context: str) -> None:
        """The body of ``define``/``block`` up to its ``end``, kept as template ``name``.

        The body sees only ``$`` (a template's own dot), not the enclosing variables.
        """
        saved_vars = self.vars
        self.vars = ["$"]
        self.enter(kw.pos)
        body, stop = self.item_list()
        self.depth -= 1
        self.vars = saved_vars
        if stop is None or stop.val != "end":
            raise self.unexpected(stop or self.peek(), context)
        self.next()
        self.expect("right", "end")
        self.defines[name] = body

    def template(self, kw: Tok) -> Node:
        name_tok = self.next()
        if name_tok.kind != "string":
            raise self.fail(MSG_TEMPLATE_NAME.format(context=f"{kw.val} clause"), name_tok.pos)
        pipe: Pipe | None = None
        if self.peek().kind != "right":
            pipe = self.pipeline(f"{kw.val} clause", end="right", decl_max=0)
        else:
            self.next()
        if kw.val == "block":
            self.named_body(kw, name=name_tok.val, context="block clause")
        return Call(kw.pos, f"template {name_tok.src}", name_tok.val, pipe)

    def branch(self, kw: Tok) -> Node:
        self.enter(kw.pos)
        saved_vars = len(self.vars)
        pipe = self.pipeline(f"{kw.val}", end="right", decl_max=2 if kw.val == "range" else 1)
        if kw.val == "range":
            self.range_depth += 1
        body, stop = self.item_list()
        if kw.val == "range":
            self.range_depth -= 1
        del self.vars[saved_vars:]
        else_body: list[Node] = []
        assert stop is not None
        self.next()
        if stop.val == "else":
            nxt = self.peek()
            if nxt.kind == "kw" and nxt.val in ("if", "with") and (kw.val != "range") and (
                nxt.val == "if" or kw.val == "with"
            ):
                # {{else if ...}} / {{else with ...}}: a nested branch that consumes our {{end}}.
                self.next()
                else_body = [self.branch(nxt)]
                self.depth -= 1
                return Branch(kw.pos, kw.val, kw.val, pipe, body, else_body)
            self.expect("right", "else")
            saved_vars = len(self.vars)
            else_body, stop2 = self.item_list()
            del self.vars[saved_vars:]
            if stop2 is None or stop2.val != "end":
                raise self.unexpected(stop2 or self.peek(), kw.val)
            self.next()
        self.expect("right", "end")
        self.depth -= 1
        return Branch(kw.pos, kw.val, kw.val, pipe, body, else_body)

    def pipeline(self, context: str, *, end: str, decl_max: int) -> Pipe:
        start = self.peek()
        decl: list[str] = []
        assign = False
        # Declarations: $x :=, $x =, or (range) $i, $e :=
        if start.kind == "var" and decl_max > 0:
            j = 1
            names = [start.val]
            while self.peek(j).kind == "," and self.peek(j + 1).kind == "var" and len(names) < decl_max:
                names.append(self.peek(j + 1).val)
                j += 2
            op = self.peek(j)
            if op.kind in (":=", "=") and (len(names) == 1 or op.kind == ":="):
                if self.peek(j).kind == "," :
                    raise self.fail(MSG_RANGE_VARS.format(context=context), op.pos)
                self.i += j + 1
                decl = names
                assign = op.kind == "="
                if assign and names[0] not in self.vars:
                    raise self.fail(MSG_UNDEFINED_VAR.format(name=names[0]), start.pos)
        cmds: list[Command] = []
        while True:
            cmd = self.command(context, end)
            cmds.append(cmd)
            tok = self.next()
            if tok.kind == "|":
                continue
            if tok.kind == end:
                break
            raise self.unexpected(tok, context)
        for k, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], (Literal, Dot)):
                raise self.fail(MSG_NON_EXEC.format(n=k), cmd.pos)
        if not assign:
            self.vars.extend(decl)
        last = self.toks[self.i - 1].pos
        return Pipe(start.pos, self.text[start.pos:last].strip(), decl, assign, cmds)

    def command(self, context: str, end: str) -> Command:
        args: list[Node] = []
        first = self.peek()
        while True:
            tok = self.peek()
            if tok.kind in ("|", end) or (tok.kind == "right" and end == ")"):
                break
            if args and not tok.spaced and tok.kind not in ("(",):
                raise self.unexpected(tok, "operand")
            args.append(self.operand(context))
        if not args:
            raise self.fail(MSG_MISSING_VALUE.format(context=context), first.pos)
        src = self.text[first.pos : self.peek().pos].strip()
        return Command(first.pos, src, args)

    def operand(self, context: str) -> Node:
        node = self.term(context)
        names: list[str] = []
        while self.peek().kind == "field" and not self.peek().spaced:
            names.append(self.next().val)
        if not names:
            return node
        src = self.text[node.pos : self.toks[self.i - 1].pos + len(self.toks[self.i - 1].src)]
        if isinstance(node, FieldRef):
            return FieldRef(node.pos, src, node.names + names)
        if isinstance(node, VarRef):
            return VarRef(node.pos, src, node.name, node.names + names)
        if isinstance(node, (Literal, Dot)):
            raise self.fail(MSG_UNEXPECTED_DOT.format(term=node.src), node.pos)
        return Chain(node.pos, src, node, names)

    def term(self, context: str) -> Node:
        tok = self.next()
        if tok.kind == "ident":
            if not self.has_func(tok.val):
                raise self.fail(MSG_UNDEFINED_FUNC.format(name=tok.val), tok.pos)
            return FuncRef(tok.pos, tok.src, tok.val)
        if tok.kind == "dot":
            return Dot(tok.pos, ".")
        if tok.kind in ("nil", "bool", "number", "string"):
            return Literal(tok.pos, tok.src, tok.val)
        if tok.kind == "field":
            return FieldRef(tok.pos, tok.src, [tok.val])
        if tok.kind == "var":
            if tok.val not in self.vars:
                raise self.fail(MSG_UNDEFINED_VAR.format(name=tok.val), tok.pos)
            return VarRef(tok.pos, tok.src, tok.val, [])
        if tok.kind == "(":
            self.enter(tok.pos)
            pipe = self.pipeline("parenthesized pipeline", end=")", decl_max=0)
            self.depth -= 1
            return Chain(tok.pos, "(" + pipe.src + ")", pipe, [])
        raise self.unexpected(tok, context)
