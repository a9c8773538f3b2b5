"""Metric providers: prometheus, web and job, behind the protocol in base.py.

analysis/handlers.py builds the lookup (registry.py) at start-up; the AnalysisRun
controller (analysis/controller.py) calls a provider for every due measurement,
in a measurement thread.
"""
