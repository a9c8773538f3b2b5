"""``tidegate lint``: each corpus file's expected message and exit code (cli/lint.py).

tests/lint_corpus/good/ must lint clean (warnings allowed); each file in
tests/lint_corpus/bad/ carries one problem, named here by the substring its message
must contain (file, document, field path and what is wrong).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cli.lint import EXIT_CLEAN, EXIT_ERRORS, EXIT_UNREADABLE, lint_files
from cli.main import main

CORPUS = Path(__file__).parent / "lint_corpus"
GOOD = sorted((CORPUS / "good").glob("*.yaml"))
DOC1 = "document 1 ({kind}): "

BAD_CASES = [
    ("rollout-step-arg-not-supplied.yaml", EXIT_ERRORS,
     DOC1.format(kind="Rollout/r") + "spec.strategy.canary.steps[1].analysis.templates[0]: "
     "AnalysisTemplate 'error-rate' requires arg 'service'"),
    ("rollout-background-arg-not-supplied.yaml", EXIT_ERRORS,
     "spec.strategy.canary.analysis.templates[0]: AnalysisTemplate 'error-rate' requires arg 'service'"),
    ("rollout-weight-out-of-range.yaml", EXIT_ERRORS,
     'spec.strategy.canary.steps[1].setWeight: Invalid value: "150": must be between 0 and 100'),
    ("rollout-bad-pause.yaml", EXIT_ERRORS,
     'spec.strategy.canary.steps[1].pause.duration: Invalid value: "5 minutes"'),
    ("rollout-schema.yaml", EXIT_ERRORS,
     "spec.strategy.canary.steps[0].setWeight: Input should be a valid integer"),
    ("rollout-two-step-kinds.yaml", EXIT_ERRORS, "spec.strategy.canary.steps[0]: a step must have exactly one of"),
    ("template-bad-condition.yaml", EXIT_ERRORS,
     DOC1.format(kind="AnalysisTemplate/bad-condition") + "spec.metrics[0].successCondition: 'result[0] <'"),
    ("template-undeclared-arg.yaml", EXIT_ERRORS, 'spec.metrics[0]: metric "errors": provider.prometheus.query: '
     'failed to resolve {{args.service}}: no argument "service"'),
    ("template-count-below-limit.yaml", EXIT_ERRORS,
     "(ClusterAnalysisTemplate/limits): spec.metrics[0]: metric \"errors\": count (1) must be >= failureLimit (3)"),
    ("run-bad-failure-condition.yaml", EXIT_ERRORS,
     "(AnalysisRun/run-1): spec.metrics[0].failureCondition: 'result[0] >> 0.01'"),
    ("notifications-bad-when.yaml", EXIT_ERRORS,
     "(ConfigMap/argocd-notifications-cm): data.trigger.on-synced[0].when: does not compile"),
    ("notifications-bad-gotemplate.yaml", EXIT_ERRORS,
     "data.template.canary-paused.message: does not compile: template: canary-paused.message:2:0: unexpected EOF"),
    ("notifications-bad-jinja.yaml", EXIT_ERRORS,
     "data.template.canary-paused.message: does not compile: template: canary-paused.message:2:0: Unexpected end"),
    ("application-schema.yaml", EXIT_ERRORS,
     "(Application/app): spec.syncPolicy.automated.prune: Input should be a valid boolean"),
    ("appproject-schema.yaml", EXIT_ERRORS, "(AppProject/proj): spec.sourceRepos: Input should be a valid list"),
    ("no-kind.yaml", EXIT_ERRORS, "document 1 (?/orphan): kind and apiVersion are required"),
    ("list-document.yaml", EXIT_ERRORS, "document 2 (?/<unnamed>): the document is not a mapping (found list)"),
    ("not-yaml.yaml", EXIT_UNREADABLE, "not-yaml.yaml: not valid YAML"),
]


def _lint(*paths: Path | str) -> tuple[int, str]:
    out = io.StringIO()
    code = lint_files([str(p) for p in paths], stream=out)
    return code, out.getvalue()


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_good_files_lint_clean(path: Path) -> None:
    code, out = _lint(path)
    assert code == EXIT_CLEAN, out
    assert " error" not in out.replace("0 error(s)", ""), out


def test_bad_corpus_is_covered() -> None:
    on_disk = {p.name for p in (CORPUS / "bad").glob("*.yaml")}
    assert on_disk == {name for name, _, _ in BAD_CASES}


@pytest.mark.parametrize(("name", "code", "expected"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_file_message_and_exit_code(name: str, code: int, expected: str) -> None:
    path = CORPUS / "bad" / name
    got, out = _lint(path)
    assert got == code, out
    assert expected in out, out
    assert out.startswith(str(path) + ": "), out  # every message names its file first


@pytest.mark.parametrize(
    ("files", "code", "expected"),
    [
        pytest.param(["seed-rollout-and-analysis.yaml"], EXIT_CLEAN,
                     "document 1 (Rollout/inference-rollout): spec.strategy.canary.steps[5].analysis.templates[0]"
                     ".templateName: warning: AnalysisTemplate 'inference-latency' is not defined in the given files",
                     id="external-template-is-a-warning"),
        pytest.param(["seed-notifications-cm.yaml"], EXIT_CLEAN,
                     "data.trigger.on-sync-failed: warning: condition [0] sends template 'pagerduty'",
                     id="unconfigured-notification-template-is-a-warning"),
    ],
)
def test_warnings_keep_exit_zero(files: list[str], code: int, expected: str) -> None:
    got, out = _lint(*(CORPUS / "good" / f for f in files))
    assert got == code, out
    assert expected in out, out


def test_templates_resolve_across_files(tmp_path: Path) -> None:
    """The template in a second -f file satisfies the reference; its arg check then runs."""
    bad = (CORPUS / "bad" / "rollout-step-arg-not-supplied.yaml").read_text(encoding="utf-8")
    rollout, template = bad.split("\n---\n", 1)
    (tmp_path / "rollout.yaml").write_text(rollout, encoding="utf-8")
    (tmp_path / "template.yaml").write_text(template, encoding="utf-8")
    alone, out_alone = _lint(tmp_path / "rollout.yaml")
    assert alone == EXIT_CLEAN and "is not defined in the given files" in out_alone
    together, out = _lint(tmp_path / "rollout.yaml", tmp_path / "template.yaml")
    assert together == EXIT_ERRORS and "requires arg 'service'" in out, out


def test_document_index_counts_every_document(tmp_path: Path) -> None:
    text = (CORPUS / "bad" / "template-bad-condition.yaml").read_text(encoding="utf-8")
    path = tmp_path / "two.yaml"
    path.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n" + text, encoding="utf-8")
    code, out = _lint(path)
    assert code == EXIT_ERRORS
    assert f"{path}: document 2 (AnalysisTemplate/bad-condition): spec.metrics[0].successCondition" in out


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, out = _lint(tmp_path / "absent.yaml")
    assert code == EXIT_UNREADABLE
    assert "absent.yaml: cannot read" in out


def test_command_line_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lint", "-f", str(CORPUS / "bad" / "rollout-weight-out-of-range.yaml"),
                 "-f", str(CORPUS / "good" / "full-canary.yaml")])
    assert code == EXIT_ERRORS
    assert "must be between 0 and 100" in capsys.readouterr().out
