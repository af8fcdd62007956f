"""The control plane: the project model and its storage, credentials, the contract registry, the
local real-time loop and the life cycle of the gateway's spool.

    from controlplane.project import Project
    project = Project.open("/tmp/demo")            # project.yaml, checked against project.schema.json
    from controlplane.contracts import ContractRegistry
    ContractRegistry("/tmp/demo").get("acme/Shop/1.0.0")   # contracts by reference only
    from controlplane.realtime import LocalLoop
    LocalLoop("/tmp/demo").step()                  # spool segments -> pipeline -> exporters
    from controlplane.spool_lifecycle import forget_in_spool   # a subject's events out of the spool

Used by the command line (``cli/``), the HTTP gateway (``gateway/``, which only serves) and the
local loop. No HTTP here.
"""
