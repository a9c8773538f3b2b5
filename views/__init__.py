"""Presentation models shared by the CLI and the dashboard.

What a rollout, its decision log and an Application look like to a person,
computed from the objects the controllers write (status, ReplicaSets, pods,
AnalysisRuns, Events). rollout.py and explain.py do no I/O: callers read the
objects and pass them in. appdiff.py's ``kube_differ`` is the one exception (it
renders an Application's source and dry-run applies it, as the controller does).
"""
