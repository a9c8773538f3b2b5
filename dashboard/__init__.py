"""``tidegate dashboard``: a local web view of Rollouts and Applications with live updates.

Started by cli/dashboard.py; reads and acts with the caller's kubeconfig credentials.
"""
