"""The analysis schema: the one part of ``analysis`` the rollout controller may import.

``models`` (AnalysisTemplate, AnalysisRun and their parts), ``phases`` (the
phase enum and its worst-first order) and ``templates`` (merging templates into
a run spec and substituting ``{{args.x}}``: pure, no Secrets, no expressions).
Everything else of ``analysis`` (run machine, conditions, providers, controller,
handlers) is the AnalysisRun controller's own.
"""
