"""Pure presentation models shared by the CLI and the dashboard.

What a rollout, its decision log and an Application look like to a person,
computed from the objects the controllers write (status, ReplicaSets, pods,
AnalysisRuns, Events). No I/O here: callers read the objects and pass them in.
"""
