"""The HTTP event gateway: OAuth2 client credentials, POST /event, durable spool, web socket listen.

    python -m gateway --project_dir ~/.config/pstream --port 8080     # or: pstream gateway

See ``gateway.app`` for the endpoints, ``gateway.spool`` for durability, ``controlplane.project`` for
the project file the command line edits.
"""
