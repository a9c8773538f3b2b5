"""User interfaces: ``tidegate`` / ``kubectl-tidegate`` and the controller command.

``cli.controller`` is the one composition root: it imports every controller's
handlers module and starts kopf. The rest (``cli.actions``) acts on objects
through each controller's ``kube`` layer, never through its handlers.
"""
