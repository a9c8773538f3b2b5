"""The alternative engine: Jinja2's SandboxedEnvironment, for templates marked
`{# engine: jinja2 #}` on their first line.

Bounds as far as Jinja allows: output size (counted while streaming), a step budget
and the clock (checked on every loop iteration, function call and attribute or item
read), `range` capped by the step budget, `*`, `**` and `%` on strings and numbers
checked before they run, no filters that format with widths, and RecursionError from
recursive macros reported as a TemplateError. The sandbox refuses underscore and
unsafe attributes; TemplateFunc values are called through `call(fn, ...)`.
Called by notifications.gotemplate.compile_template / CompiledTemplate.render.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.nodes as jn
from jinja2.sandbox import SandboxedEnvironment

from notifications.gotemplate.errors import Limits, TemplateError, TemplateFunc
from notifications.gotemplate.values import go_json

MSG_OUTPUT = "render stopped: output exceeds {n} bytes"
MSG_STEPS = "render stopped: more than {n} evaluation steps"
MSG_TIME = "render stopped: took longer than {s} seconds"
MSG_DEPTH = "render stopped: recursion too deep"
MSG_BIG = "operation result would exceed the output limit of {n} bytes"
MSG_CALL = "{name}: {error}"
MSG_SYNTAX = "{msg}"
_REMOVED_FILTERS = ("format", "center", "wordwrap", "indent", "filesizeformat", "xmlattr", "pprint", "urlize")


@dataclass
class _Budget:
    limits: Limits
    steps: int = 0
    deadline: float = field(default=0.0)

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise _Stop(MSG_STEPS.format(n=self.limits.max_steps))
        if time.monotonic() > self.deadline:
            raise _Stop(MSG_TIME.format(s=self.limits.timeout_seconds))


class _Stop(Exception):
    pass


class _Env(SandboxedEnvironment):
    """A sandbox that charges every call, read and iteration to the render's budget."""

    budget: _Budget | None = None
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def _tick(self) -> None:
        if self.budget is not None:
            self.budget.tick()

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
        self._tick()
        for value in list(args) + list(kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > self._limit():
                raise _Stop(MSG_BIG.format(n=self._limit()))
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._tick()
        return super().getitem(obj, argument)

    def _limit(self) -> int:
        return self.budget.limits.max_output if self.budget else Limits().max_output

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        limit = self._limit()
        if operator == "%" and isinstance(left, str):
            raise _Stop("string % formatting is not available in templates")
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise _Stop(MSG_BIG.format(n=limit))
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > limit:
                    raise _Stop(MSG_BIG.format(n=limit))
        if operator == "+" and isinstance(left, (str, list)) and isinstance(right, (str, list)):
            if len(left) + len(right) > limit:
                raise _Stop(MSG_BIG.format(n=limit))
        return super().call_binop(context, operator, left, right)

    def _parse(self, source: str, name: str | None, filename: str | None) -> jn.Template:
        tree = super()._parse(source, name, filename)
        # Every loop's iterable goes through _counted, so each iteration is charged.
        for loop in tree.find_all(jn.For):
            loop.iter = jn.Call(jn.Name("__tg_iter", "load"), [loop.iter], [], None, None)
        return tree


def _counted(env: _Env, iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        env._tick()
        yield item


def _make_env() -> _Env:
    env = _Env(autoescape=False, undefined=jinja2.Undefined, keep_trailing_newline=True)
    for name in _REMOVED_FILTERS:
        env.filters.pop(name, None)
    env.globals["__tg_iter"] = lambda it: _counted(env, it)
    env.globals["range"] = lambda *a: _counted(env, range(*a))
    env.globals["call"] = _call_func
    env.filters["toJson"] = lambda v: go_json(v)
    env.filters["toPrettyJson"] = lambda v: go_json(v, pretty=True)
    return env


def _call_func(fn: Any, *args: Any) -> Any:
    if not isinstance(fn, TemplateFunc):
        raise _Stop(f"call of a non-function of type {type(fn).__name__}")
    try:
        return fn.fn(*args)
    except Exception as exc:  # the caller's function: reported, never raised through
        raise _Stop(MSG_CALL.format(name=fn.name, error=exc)) from None


@dataclass
class JinjaTemplate:
    env: _Env
    template: jinja2.Template


def compile_jinja(name: str, text: str, *, limits: Limits) -> JinjaTemplate:
    env = _make_env()
    body = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        # The marker line is dropped; line numbers in errors count from the line after it, so add one.
        return JinjaTemplate(env, env.from_string(body))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(MSG_SYNTAX.format(msg=exc.message or "syntax error"), name=name,
                            line=(exc.lineno or 0) + 1, col=0) from None
    except (RecursionError, MemoryError):
        raise TemplateError(MSG_DEPTH, name=name, line=1, col=0) from None


def render(compiled: JinjaTemplate, *, name: str, data: Mapping[str, Any], limits: Limits) -> str:
    budget = _Budget(limits, deadline=time.monotonic() + limits.timeout_seconds)
    compiled.env.budget = budget
    out: list[str] = []
    size = 0
    try:
        for chunk in compiled.template.generate(dict(data)):
            size += len(chunk.encode("utf-8", "surrogatepass"))
            if size > limits.max_output:
                raise _Stop(MSG_OUTPUT.format(n=limits.max_output))
            out.append(chunk)
            budget.tick()
    except _Stop as exc:
        raise TemplateError(str(exc), name=name, line=1, col=0) from None
    except RecursionError:
        raise TemplateError(MSG_DEPTH, name=name, line=1, col=0) from None
    except Exception as exc:  # Jinja's own errors (undefined, sandbox refusals, type errors)
        raise TemplateError(f"{type(exc).__name__}: {exc}", name=name, line=1, col=0) from None
    finally:
        compiled.env.budget = None
    return "".join(out)
