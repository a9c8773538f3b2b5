"""The Rollout controller: Argo Rollouts' canary strategy with Istio traffic routing.

Layers, top to bottom (import-linter proves them, see docs/architecture.md):
``handlers`` (kopf wiring, imported by the composition root cli/controller.py) >
``kube`` (the only API calls) > ``engine`` (pure decisions) > ``traffic`` (pure
Istio document math the engine decides with) > ``api`` (models and Argo's
names). Of ``analysis`` it imports only ``analysis.api``.
"""
