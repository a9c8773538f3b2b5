"""Tests for notifications.gotemplate: the template corpus, the error format, the bounds,
the Jinja2 alternative, and Hypothesis fuzzing that only TemplateError ever escapes.

The corpus (tests/fixtures/notifications/templates/*.yaml) holds the seed's template,
Argo CD's and Argo Rollouts' catalog templates, language and Sprig cases and hostile
ones; cases marked checked_against_go had their expected output printed by Go's
text/template with Sprig when they were written.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifications.gotemplate import Limits, TemplateError, TemplateFunc, compile_template

CORPUS = Path(__file__).parent / "fixtures" / "notifications" / "templates"
FIXTURES = sorted(CORPUS.glob("*.yaml"))


def _repo_to_https(url: str) -> str:
    if url.startswith("git@"):
        host, _, path = url[4:].partition(":")
        return f"https://{host}/{path.removesuffix('.git')}"
    return url


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_corpus_is_large_enough() -> None:
    assert len(FIXTURES) >= 60
    checked = [p for p in FIXTURES if _load(p).get("checked_against_go")]
    assert len(checked) >= 40


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_corpus(path: Path) -> None:
    case = _load(path)
    data = dict(case.get("data") or {})
    if case.get("inject") == "repo":
        data["repo"] = {"RepoURLToHTTPS": TemplateFunc(_repo_to_https, name="RepoURLToHTTPS")}
    if "expected_error" in case:
        with pytest.raises(TemplateError) as info:
            compile_template(path.stem, case["template"]).render(data)
        assert case["expected_error"] in str(info.value)
        assert str(info.value).startswith(f"template: {path.stem}:")
    else:
        assert compile_template(path.stem, case["template"]).render(data) == case["expected"]


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        ("{{.a.b}}", {"a": {"b": 1}}, "template: t:1:2: "),
        ("x\n  {{.x.y.z}}", {"x": {"y": "s"}}, "template: t:2:4: executing \"t\" at <.x.y.z>: can't evaluate field z"),
        ("ok\n{{nosuch}}", {}, 'template: t:2:2: function "nosuch" not defined'),
        ("{{if 1}}\n\n{{else}}{{end", {}, "template: t:3:"),
    ],
    ids=["no-error-baseline", "exec-error-line-col", "parse-error-line-col", "unclosed-at-line-3"],
)
def test_error_format(text: str, data: dict[str, Any], expected: str) -> None:
    try:
        compile_template("t", text).render(data)
    except TemplateError as exc:
        assert str(exc).startswith(expected)
        assert exc.name == "t"
        assert str(exc) == f"template: t:{exc.line}:{exc.col}: {exc.message}"
    else:
        assert expected == "template: t:1:2: "


@pytest.mark.parametrize(
    ("text", "limits", "message"),
    [
        ("{{range 50}}x{{end}}", Limits(max_steps=40), "evaluation steps"),
        ("{{range 50}}xxxx{{end}}", Limits(max_output=100), "output exceeds 100 bytes"),
        ("{{if 1}}{{if 1}}{{if 1}}x{{end}}{{end}}{{end}}", Limits(max_depth=2), "max depth 2"),
        ("{{define \"r\"}}{{template \"r\"}}{{end}}{{template \"r\"}}", Limits(max_depth=5), "maximum template depth (5)"),
        ("{{range 10000000}}{{end}}", Limits(max_steps=10**9, timeout_seconds=0.05), "took longer than 0.05 seconds"),
        ("{{printf \"%200s\" \"x\"}}", Limits(max_output=100), "exceeds the output limit"),
    ],
    ids=["steps", "output", "static-depth", "template-depth", "time", "printf-width"],
)
def test_limits(text: str, limits: Limits, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_template("t", text, limits=limits).render({})


def test_call_reaches_only_templatefunc_and_wraps_its_failure() -> None:
    def boom(_: str) -> str:
        raise ValueError("no repo")

    data = {"repo": {"F": TemplateFunc(boom, name="F"), "plain": len}}
    with pytest.raises(TemplateError, match="error calling call: F: no repo"):
        compile_template("t", "{{call .repo.F \"x\"}}").render(data)
    with pytest.raises(TemplateError, match="non-function"):
        compile_template("t", "{{call .repo.plain \"x\"}}").render(data)
    with pytest.raises(TemplateError, match="not a method but has arguments"):
        compile_template("t", "{{.repo.F \"x\"}}").render(data)


def test_commit_metadata_struct_is_read_by_keys() -> None:
    meta = TemplateFunc(lambda rev: {"Author": "ada", "Message": f"fix {rev}"}, name="GetCommitMetadata")
    out = compile_template("t", "{{(call .repo.GetCommitMetadata .rev).Author}}").render(
        {"repo": {"GetCommitMetadata": meta}, "rev": "abc"}
    )
    assert out == "ada"


def test_python_objects_are_not_walked() -> None:
    class Secretive:
        token = "s3cr3t"

    with pytest.raises(TemplateError):
        compile_template("t", "{{.o.token}}").render({"o": Secretive()})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{# engine: jinja2 #}\n{{ a | upper }}", "X"),
        ("{# engine: jinja2 #}\n{{ call(f, 'y') }}", "fy"),
        ("{# engine: jinja2 #}\n{{ m | toJson }}", '{"k":"\\u003c"}'),
    ],
    ids=["filter", "call-templatefunc", "toJson"],
)
def test_jinja(text: str, expected: str) -> None:
    data = {"a": "x", "f": TemplateFunc(lambda v: "f" + v, name="f"), "m": {"k": "<"}}
    assert compile_template("t", text).render(data) == expected


@pytest.mark.parametrize(
    "body",
    ["{{ 'a' * 10**9 }}", "{% for i in range(10**6) %}{% endfor %}", "{{ x ** 100000 }}", "{% if %}"],
    ids=["string-bomb", "range-steps", "power", "syntax"],
)
def test_jinja_bounds(body: str) -> None:
    with pytest.raises(TemplateError):
        compile_template("t", "{# engine: jinja2 #}\n" + body).render({"x": 10})


_ALPHABET = string.ascii_letters + string.digits + " .$|(){}-\"'`:=,_/*\n\t%"
_FRAGMENTS = st.sampled_from(
    ["{{", "}}", "{{-", "-}}", "{{if", "{{else}}", "{{end}}", "{{range", "{{with", ".a", ".b.c", "$x", ":=",
     "|", "printf", "\"%d\"", "eq", "index", "len", "toJson", "(", ")", "1", "\"s\"", "nil", "true",
     "{{define \"d\"}}", "{{template \"d\" .}}", "{{break}}", "/*", "*/", "slice", "default", "split"]
)
_DATA = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "c", "x"]), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.lists(st.one_of(_FRAGMENTS, st.text(alphabet=_ALPHABET, max_size=6)), max_size=20).map("".join),
    data=st.dictionaries(st.sampled_from(["a", "b", "c", "x"]), _DATA, max_size=4),
)
def test_fuzz_only_template_error_escapes(text: str, data: dict[str, Any]) -> None:
    limits = Limits(max_output=4096, max_steps=2000, timeout_seconds=0.5)
    try:
        out = compile_template("fuzz", text, limits=limits).render(data)
    except TemplateError as exc:
        assert str(exc).startswith("template: fuzz:")
    else:
        assert isinstance(out, str)
        assert len(out.encode("utf-8", "surrogatepass")) <= 4096
