"""Executes a parsed template against data, as text/template's exec does, within Limits.

Data is read only through Mapping keys and list/tuple indexes; the only callables are
the engine's functions and TemplateFunc values reached through `call`. Every node
evaluation is a step; the clock, the output size and the depth are checked as it goes.
Called by notifications.gotemplate.CompiledTemplate.render.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from notifications.gotemplate import funcs
from notifications.gotemplate.errors import Limits, TemplateError, position
from notifications.gotemplate.parse import (
    Action,
    Branch,
    Call,
    Chain,
    Command,
    Dot,
    FieldRef,
    FuncRef,
    Jump,
    Literal,
    Node,
    Pipe,
    Text,
    VarRef,
)
from notifications.gotemplate.values import EvalError, is_list, print_action, truth, type_name

MSG_EXEC = 'executing "{tmpl}" at <{node}>: {msg}'
MSG_STEPS = "render stopped: more than {n} evaluation steps"
MSG_TIME = "render stopped: took longer than {s} seconds"
MSG_OUTPUT = "render stopped: output exceeds {n} bytes"
MSG_DEPTH = "exceeded maximum template depth ({n})"
MSG_NO_TEMPLATE = 'template "{name}" not defined'
MSG_FIELD_TYPE = "can't evaluate field {name} in type {kind}"
MSG_NOT_METHOD = "{name} is not a method but has arguments"
MSG_NOT_FUNC = "can't give argument to non-function {node}"
MSG_RANGE_OVER = "range can't iterate over {value}"
MSG_RANGE_TWO = "can't use {value} to iterate over more than one variable"
MSG_IF_USE = "if/with can't use {value}"
MSG_NON_STRING_KEY = "map key {key!r} is not a string"
_CLOCK_EVERY = 64


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Abort(Exception):
    """A limit or evaluation failure already formatted as a TemplateError."""

    def __init__(self, error: TemplateError) -> None:
        super().__init__(str(error))
        self.error = error


class Renderer:
    """One render: state for the variables, the output and the budgets."""

    def __init__(
        self, *, name: str, text: str, body: list[Node], defines: dict[str, list[Node]], limits: Limits
    ) -> None:
        self.name = name
        self.text = text
        self.body = body
        self.defines = defines
        self.limits = limits
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.depth = 0
        self.deadline = time.monotonic() + limits.timeout_seconds
        self.vars: list[tuple[str, Any]] = []
        self.current = name
        self.ctx = funcs.Context(max_output=limits.max_output, call_fn=self._call_func)

    # ---- errors and budgets
    def fail(self, node: Node, msg: str) -> _Abort:
        line, col = position(self.text, node.pos)
        src = node.src if len(node.src) <= 40 else node.src[:37] + "..."
        full = MSG_EXEC.format(tmpl=self.current, node=src, msg=msg)
        return _Abort(TemplateError(full, name=self.name, line=line, col=col))

    def step(self, node: Node) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise self.fail(node, MSG_STEPS.format(n=self.limits.max_steps))
        if self.steps % _CLOCK_EVERY == 0 and time.monotonic() > self.deadline:
            raise self.fail(node, MSG_TIME.format(s=self.limits.timeout_seconds))

    def write(self, node: Node, text: str) -> None:
        self.size += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if self.size > self.limits.max_output:
            raise self.fail(node, MSG_OUTPUT.format(n=self.limits.max_output))
        self.out.append(text)

    # ---- entry
    def render(self, data: Mapping[str, Any]) -> str:
        self.vars = [("$", data)]
        try:
            self.walk_list(self.body, data)
        except _Abort as exc:
            raise exc.error from None
        except RecursionError:
            raise TemplateError(
                MSG_DEPTH.format(n=self.limits.max_depth), name=self.name, line=1, col=0
            ) from None
        if time.monotonic() > self.deadline:
            raise TemplateError(
                MSG_TIME.format(s=self.limits.timeout_seconds), name=self.name, line=1, col=0
            )
        return "".join(self.out)

    # ---- statements
    def walk_list(self, nodes: list[Node], dot: Any) -> None:
        for node in nodes:
            self.walk(node, dot)

    def walk(self, node: Node, dot: Any) -> None:
        self.step(node)
        if isinstance(node, Text):
            self.write(node, node.text)
        elif isinstance(node, Action):
            assert node.pipe is not None
            value = self.pipe(node.pipe, dot)
            if not node.pipe.decl:
                try:
                    self.write(node, print_action(value))
                except EvalError as exc:
                    raise self.fail(node, str(exc)) from None
        elif isinstance(node, Branch):
            self.enter(node)
            mark = len(self.vars)
            try:
                if node.kind == "range":
                    self.range(node, dot)
                else:
                    self.if_with(node, dot)
            finally:
                del self.vars[mark:]
                self.depth -= 1
        elif isinstance(node, Call):
            self.template(node, dot)
        elif isinstance(node, Jump):
            raise _Break() if node.kind == "break" else _Continue()

    def enter(self, node: Node) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise self.fail(node, MSG_DEPTH.format(n=self.limits.max_depth))

    def if_with(self, node: Branch, dot: Any) -> None:
        assert node.pipe is not None
        value = self.pipe(node.pipe, dot)
        if truth(value):
            self.walk_list(node.body, value if node.kind == "with" else dot)
        else:
            self.walk_list(node.else_body, dot)

    def range(self, node: Branch, dot: Any) -> None:
        assert node.pipe is not None
        value = self.pipe(node.pipe, dot, declare=False)
        items: Any
        if value is None:
            items = ()
        elif isinstance(value, Mapping):
            items = ((k, value[k]) for k in sorted(value, key=_key_order))
        elif is_list(value):
            items = enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decl) > 1:
                raise self.fail(node.pipe, MSG_RANGE_TWO.format(value=value))
            items = ((i, i) for i in range(max(value, 0)))
        else:
            raise self.fail(node.pipe, MSG_RANGE_OVER.format(value=print_action(value)))
        mark = len(self.vars)
        ran = False
        for key, elem in items:
            ran = True
            self.step(node)
            decl = node.pipe.decl
            if len(decl) == 1:
                self.vars.append((decl[0], elem))
            elif len(decl) == 2:
                self.vars.append((decl[0], key))
                self.vars.append((decl[1], elem))
            try:
                self.walk_list(node.body, elem)
            except _Break:
                break
            except _Continue:
                pass
            finally:
                del self.vars[mark:]
        if not ran:
            self.walk_list(node.else_body, dot)

    def template(self, node: Call, dot: Any) -> None:
        body = self.defines.get(node.name)
        if body is None:
            raise self.fail(node, MSG_NO_TEMPLATE.format(name=node.name))
        new_dot = self.pipe(node.pipe, dot) if node.pipe is not None else None
        self.enter(node)
        saved_vars, saved_name = self.vars, self.current
        self.vars, self.current = [("$", new_dot)], node.name
        try:
            self.walk_list(body, new_dot)
        finally:
            self.vars, self.current = saved_vars, saved_name
            self.depth -= 1

    # ---- expressions
    def pipe(self, pipe: Pipe, dot: Any, *, declare: bool = True) -> Any:
        value: Any = None
        first = True
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value, has_final=not first)
            first = False
        if declare and pipe.decl:
            if pipe.assign:
                self.set_var(pipe.decl[0], value)
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return

    def get_var(self, node: Node, name: str) -> Any:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                return self.vars[i][1]
        return None

    def command(self, cmd: Command, dot: Any, final: Any, *, has_final: bool) -> Any:
        self.step(cmd)
        head = cmd.args[0]
        if isinstance(head, FuncRef):
            return self.call_function(cmd, head, dot, final, has_final=has_final)
        if len(cmd.args) > 1 or has_final:
            if isinstance(head, (FieldRef, VarRef, Chain)) and _names(head):
                raise self.fail(head, MSG_NOT_METHOD.format(name=_names(head)[-1]))
            raise self.fail(head, MSG_NOT_FUNC.format(node=head.src))
        return self.arg(head, dot)

    def arg(self, node: Node, dot: Any) -> Any:
        self.step(node)
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Dot):
            return dot
        if isinstance(node, FieldRef):
            return self.fields(node, dot, node.names)
        if isinstance(node, VarRef):
            return self.fields(node, self.get_var(node, node.name), node.names)
        if isinstance(node, Chain):
            assert node.node is not None
            if isinstance(node.node, Pipe):
                self.enter(node)
                try:
                    base = self.pipe(node.node, dot, declare=False)
                finally:
                    self.depth -= 1
            else:
                base = self.arg(node.node, dot)
            return self.fields(node, base, node.names)
        if isinstance(node, FuncRef):
            return self.call_function(Command(node.pos, node.src, [node]), node, dot, None, has_final=False)
        raise self.fail(node, f"can't evaluate {node.src}")

    def fields(self, node: Node, value: Any, names: list[str]) -> Any:
        for i, name in enumerate(names):
            if value is None:
                # Go (missingkey=default) yields <no value> through a chain of missing map keys.
                return None
            if isinstance(value, Mapping):
                value = value.get(name)
                continue
            kind = "interface {}" if i > 0 or not isinstance(node, FieldRef) else type_name(value)
            raise self.fail(node, MSG_FIELD_TYPE.format(name=name, kind=kind))
        return value

    def call_function(self, cmd: Command, head: FuncRef, dot: Any, final: Any, *, has_final: bool) -> Any:
        spec = funcs.FUNCS[head.name]
        arg_nodes = cmd.args[1:]
        try:
            if spec.lazy:
                thunks: list[Callable[[], Any]] = [partial(self.arg, n, dot) for n in arg_nodes]
                if has_final:
                    thunks.append(partial(_const, final))
                return spec.fn(self.ctx, thunks)
            args = [self.arg(n, dot) for n in arg_nodes]
            if has_final:
                args.append(final)
            return spec.fn(self.ctx, args)
        except EvalError as exc:
            raise self.fail(cmd, f"error calling {head.name}: {exc}") from None

    def _call_func(self, fn: Any, args: list[Any]) -> Any:
        return funcs.invoke(fn, args)


def _const(value: Any) -> Any:
    return value


def _names(node: Node) -> list[str]:
    if isinstance(node, (FieldRef, VarRef, Chain)):
        return node.names
    return []


def _key_order(key: Any) -> tuple[int, Any]:
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return (0, key)
    return (1, str(key))
