"""Runtime pieces both controllers share: a keyed work queue and API client setup.

Lives under ``analysis`` because the analysis controller must never import
``rollouts``; the rollout controller may import this package (see the import
contracts in pyproject.toml).
"""
