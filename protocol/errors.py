"""The one exception family that every decoder and verifier in `protocol` raises.

Callers that take bytes from a peer or from disk catch `RecordError` alone: anything
else escaping a decoder is a bug, and the fuzz tests hold the code to that.
"""


class RecordError(ValueError):
    """Bytes or a record were refused; `str(err)` is one sentence saying why."""


class DecodeError(RecordError):
    """The bytes are not a canonical encoding of an acceptable value."""


class SignatureError(RecordError):
    """A signature does not verify, or is not of the expected form."""
