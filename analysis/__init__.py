"""The AnalysisRun controller: measures metrics and judges a canary by them.

``api/`` is the schema (the only part the rollout controller may import);
``templates`` resolves a run's args, ``run`` is the pure state machine,
``conditions`` judges a measurement, ``providers/`` take them, ``controller``
is the reconcile (the only I/O) and ``handlers`` the kopf wiring, imported by
the composition root cli/controller.py. Never imports ``rollouts``.
"""
