"""The only code in ``rollouts`` that talks to the Kubernetes API server.

handlers.py hands it a plan from the pure engine; it performs the plan's writes,
skipping any that would not change anything.
"""
