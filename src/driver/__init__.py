"""The Python driver: send events to the gateway, shaped like the reference's ``strmprivacy.driver``.

    from driver.client.syncsender import SyncSender
    from driver.serializer import SerializationType

    sender = SyncSender(client_id, client_secret)            # gateway from $PSTREAM_GATEWAY_URL
    sender = SyncSender(client_id, client_secret, config={"gateway_url": "http://127.0.0.1:8080"})
    sender.start()
    sender.wait_ready()
    error = sender.send_event(event)                           # None on success, else the error
    sender.stop()

For throughput, ``driver.client.asyncsender.AsyncSender`` sends many events concurrently from
asyncio code. Events are dicts with a ``strmMeta.eventContractRef``, or objects of the classes
that ``pstream get schema-code`` generates.
"""
from driver.config import ClientConfig
from driver.serializer import SerializationType

__all__ = ["ClientConfig", "SerializationType"]
