"""Running avfed on Flower's deployment engine: a SuperLink and SuperNodes.

:mod:`avfed.deploy.commands` writes the command lines (for this machine or for real
ones), :mod:`avfed.deploy.certs` makes TLS certificates and SuperNode keys,
:mod:`avfed.deploy.launch` starts and stops a local federation and runs a recipe on it,
and :mod:`avfed.deploy.cli` is ``avfed federate``. docs/deployment.md tells the whole
story, from one laptop to many machines.
"""
