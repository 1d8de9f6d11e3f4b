"""The governance core's refusals.

Every rejection is an exception whose `str()` is one sentence the admin API can return as is.
Records that fail to decode or verify raise `communs.protocol.errors.RecordError` (with its
`DecodeError` and `SignatureError`) like every other record, so callers handling bytes from a
member or a peer catch one family; the classes here are for rule decisions about valid records.
"""


class GovernanceError(ValueError):
    """A governance value or action was refused; `str(err)` is one sentence saying why."""


class LicenceError(GovernanceError):
    """A licence expression or id is invalid or unknown."""


class PolicyError(GovernanceError):
    """A licence policy (RULES.toml or a proposal body) is not acceptable."""


class RejectedError(GovernanceError):
    """A well-formed, well-signed proposal or ballot is refused by the rules (non-member, closed...)."""


class UnchangedVote(RejectedError):
    """A member's new ballot says what their ballot in force already says: recording it would change nothing."""
