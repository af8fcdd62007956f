"""The control plane: the project model and its storage, credentials, the contract registry and the
contracts' life cycle, the audit log, the local real-time loop and the life cycle of the gateway's spool.

    from controlplane.project import Project
    project = Project.open("/tmp/demo")            # project.yaml, checked against project.schema.json
    from controlplane.contracts import ContractRegistry
    ContractRegistry("/tmp/demo").get("acme/Shop/1.0.0")   # contracts by reference only (the only registry:
                                                           # the gateway caches over it)
    ContractRegistry("/tmp/demo").transition("acme/Shop/1.0.0", "approve", user="bob")   # controlplane.lifecycle
    from controlplane.audit import AuditLog                # the tamper-evident audit log (transitions, requests)
    from controlplane.realtime import LocalLoop
    LocalLoop("/tmp/demo").step()                  # spool segments -> pipeline -> exporters
    from controlplane.spool_lifecycle import forget_in_spool   # a subject's events out of the spool

Used by the command line (``cli/``), the HTTP gateway (``gateway/``, which only serves) and the
local loop. No HTTP here.
"""
