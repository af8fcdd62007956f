"""Reaching a project's data connector with Beam's file systems, and probing it.

    from controlplane.connectors import beam_access, reaching, quiet_storage_logs, probe_data_connector
    probe_data_connector(connector)              # ConnectorError (one line) unless it can be written
    options, env = beam_access(connector)      # Beam options and variables for it
    with reaching(options, env):                 # FileSystems and os.environ set, then restored
        FileSystems.create(...)

A connector is ``pipelines.connectors.Connector``: its credentials are read by
``connector_access`` (a file or a variable; ``default`` is the platform's own), its Beam
options and variables set by ``Exports.apply``, as ``pipelines.run`` does for a pipeline
config's connectors; the probe is ``pipelines.connectors.probe`` (write and delete an empty
``.strm_test_<uuid>.jsonl``). ``pstream create data-connector`` probes the connector's root
(``--no-probe`` skips it), the local loop each exporter's directory when it starts it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

LOCAL_RUNNER = "FnApiRunner"


def beam_access(connector, where: str = ""):
    """(PipelineOptions, environment) with what Beam needs to reach ``connector``; ConnectorError
    when its credentials cannot be read or do not fit its kind."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from pipelines.connectors import Exports, connector_access

    access = connector_access(connector, where=where or connector.describe())
    options, env = PipelineOptions([f"--runner={LOCAL_RUNNER}"]), {}
    Exports({connector.name: connector}, [], access).apply(options, env)
    return options, env


@contextmanager
def quiet_storage_logs():
    """Storage clients log a failed write with its traceback before raising it (Beam's S3 file
    system on the root logger); the probe's own one-line message says what failed, so logging
    is held back while it runs (the CLI and the local loop probe from one thread)."""
    import logging

    saved = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(saved)


@contextmanager
def reaching(options, env: dict):
    """Beam's FileSystems pointed at ``options`` and ``env`` set in os.environ; both as before afterwards."""
    from apache_beam.io.filesystems import FileSystems

    saved_options, saved_env = FileSystems._pipeline_options, {name: os.environ.get(name) for name in env}
    FileSystems.set_options(options)
    os.environ.update(env)
    try:
        yield
    finally:
        FileSystems.set_options(saved_options)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def probe_data_connector(connector) -> None:
    """Read the connector's credentials and write and delete a probe file at its root; a
    ConnectorError with a one-line message naming the connector if either fails."""
    from pipelines.connectors import ENCRYPTED, ConnectorError, Exporter, probe

    exporter = Exporter("probe", ENCRYPTED, connector)
    options, env = beam_access(connector, where=connector.describe())
    with reaching(options, env), quiet_storage_logs():
        try:
            probe(exporter)
        except ConnectorError as exc:   # its message starts with the pseudo exporter's name
            raise ConnectorError(str(exc).removeprefix("exporter 'probe': ")) from None
