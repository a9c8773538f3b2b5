"""Notification templates: Go text/template syntax (our own parser and renderer) or Jinja2.

`compile_template(name, text)` parses once; `CompiledTemplate.render(data)` renders
within Limits (output size, evaluation steps, nesting depth, time). Data is read only
through Mapping keys and list/tuple indexes; a template calls only the engine's
functions and TemplateFunc values the caller put in the data. Every failure is a
TemplateError ("template: NAME:LINE:COL: message").

Missing keys follow Go's default (`missingkey=default`, as Argo's notifications-engine
leaves it): `{{.app.nope}}` and chains through a missing key (`{{.a.b.c}}` with no `a`)
print `<no value>`; a field of a non-map (`{{.name.x}}` on a string) is an error.
A template whose first line is `{# engine: jinja2 #}` is rendered by Jinja2's sandbox.
Called by the notifications renderer (templates from the notification ConfigMaps).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifications.gotemplate import funcs
from notifications.gotemplate.errors import Limits, TemplateError, TemplateFunc
from notifications.gotemplate.parse import Node, Parser
from notifications.gotemplate.render import Renderer

__all__ = ["CompiledTemplate", "Limits", "TemplateError", "TemplateFunc", "compile_template", "JINJA_MARKER"]

JINJA_MARKER = "{# engine: jinja2 #}"
MSG_DATA = "data must be a mapping, got {kind}"


class CompiledTemplate:
    """A parsed template, rendered any number of times."""

    def __init__(
        self,
        name: str,
        *,
        text: str,
        limits: Limits,
        body: list[Node] | None = None,
        defines: dict[str, list[Node]] | None = None,
        jinja: Any = None,
    ) -> None:
        self.name = name
        self._text = text
        self._limits = limits
        self._body = body or []
        self._defines = defines or {}
        self._jinja = jinja

    def render(self, data: Mapping[str, Any]) -> str:
        if not isinstance(data, Mapping):
            raise TemplateError(MSG_DATA.format(kind=type(data).__name__), name=self.name, line=1, col=0)
        if self._jinja is not None:
            from notifications.gotemplate import jinja

            return jinja.render(self._jinja, name=self.name, data=data, limits=self._limits)
        renderer = Renderer(
            name=self.name, text=self._text, body=self._body, defines=self._defines, limits=self._limits
        )
        return renderer.render(data)


def compile_template(name: str, text: str, *, limits: Limits | None = None) -> CompiledTemplate:
    """Parses a template; raises TemplateError naming the line and column of a syntax error."""
    limits = limits or Limits()
    first_line = text.split("\n", 1)[0].strip()
    if first_line == JINJA_MARKER:
        from notifications.gotemplate import jinja

        compiled = jinja.compile_jinja(name, text, limits=limits)
        return CompiledTemplate(name, text=text, limits=limits, jinja=compiled)
    try:
        body, defines = Parser(name, text, funcs=funcs.has_func, max_depth=limits.max_depth).parse()
    except RecursionError:
        raise TemplateError("template nesting too deep", name=name, line=1, col=0) from None
    return CompiledTemplate(name, text=text, limits=limits, body=body, defines=defines)
