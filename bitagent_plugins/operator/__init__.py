"""The ``operator`` plugin: tools for the people who run validators and miners.

``bitagent register`` (wait for a registration window and an acceptable burn cost, then register),
``bitagent stage`` (a whole subnet on a local chain: wallets, funding, subnet, registrations, processes),
``bitagent update`` (install a newer release beside the current one, check it, switch, roll back on failure),
The hardware requirements (``min_compute.toml``) live with the validator that checks them:
:mod:`bitagent_plugins.subnet.requirements`.
"""
