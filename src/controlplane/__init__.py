"""The control plane: the project model and its storage, and the local real-time loop.

    from controlplane.project import Project
    project = Project.open("/tmp/demo")            # pipelines, privacy streams, connectors, exporters
    from controlplane.realtime import LocalLoop
    LocalLoop("/tmp/demo").step()                  # spool segments -> pipeline -> exporters

Used by the command line (``cli/``), the HTTP gateway (``gateway/``, which only serves) and the
local loop. No HTTP here.
"""
