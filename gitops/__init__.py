"""The sync module (Git to cluster, Argo CD's Application and AppProject API).

Today only ``api``: the pydantic models of Application and AppProject, so the
seed's YAML validates unchanged. The controller itself (sources, render, diff,
plan, apply, health, handlers) is the subject of its own issue.
"""
