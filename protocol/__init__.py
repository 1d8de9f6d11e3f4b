"""Communs protocol: records, canonical encoding, signatures, identifiers, wire codecs, overlay adapter."""
