"""Communs governance: roster, proposals, ballots, tallies and licence policy (pure code)."""
