"""The shared runtime below every Tidegate controller; domain-free.

Base API types (``api``), the API client and its error helpers (``kubeclient``),
Events (``events``), the keyed work queue (``workqueue``) and per-tenant slots
(``fairness``), secret redaction (``redaction``), the controller shell both
controllers' kopf handlers run in (``shell``) and the one logging setup
(``logging``). Imports no controller package:
``rollouts``, ``analysis``, ``gitops`` and ``cli`` build on it, never the reverse.
"""
