"""Notifications: Argo CD's and Argo Rollouts' triggers and templates, delivered once.

A controller package of its own (a sibling of rollouts/, analysis/ and gitops/; it
imports only common/). It watches Applications, AppProjects, Rollouts and
AnalysisRuns, reads the notification ConfigMaps, and sends to Slack, PagerDuty,
webhooks and email. Started by `tidegate controller --components notifications`.
"""
