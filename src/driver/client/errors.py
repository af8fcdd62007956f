"""What ``send_event`` returns when an event is not accepted."""
from __future__ import annotations


class SendError(Exception):
    """The gateway refused the event (``status`` 4xx/5xx) or could not be reached (``status`` None).

    ``str(error)`` is ``"<status>: <the gateway's text>"``; for a 400 that text names the field
    and the contract, as the reference gateway does.
    """

    def __init__(self, status: int | None, message: str):
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
