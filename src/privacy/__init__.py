"""The pure privacy core: AES-SIV in Tink's format, keysets, KEKs, the key store and key ring,
privacy-stream rules and masking, field-level encryption of events. No Beam imports.

    from privacy.daead import SivKey
    from privacy.keyring import KeyRing
    from privacy.fields import FieldPlan
    from privacy.streams import StreamSpec
"""
