"""End-to-end tests against the real local control plane; `make e2e` runs them (see conftest.py)."""
