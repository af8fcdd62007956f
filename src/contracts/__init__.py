"""Data contracts: the YAML model, event checks and the Avro mapping. No Beam imports.

    from contracts import load_contract, load_contract_ref
    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")   # a reference or a file
    contract = load_contract_ref(ref_from_a_request)                           # a reference only

The loader (strict YAML and the JSON Schema check, ``contracts.loader``) is imported when one of
its names is first used, so that code needing only the model (``contracts.model``: the CLI's
``--help``, the privacy core) does not import jsonschema.
"""
from contracts.model import Contract, Node

_LOADER_NAMES = ("ContractError", "list_contracts", "load_contract", "load_contract_ref", "parse_contract")
__all__ = ["Contract", "Node", *_LOADER_NAMES]


def __getattr__(name: str):
    if name in _LOADER_NAMES:
        from contracts import loader
        return getattr(loader, name)
    raise AttributeError(f"module 'contracts' has no attribute '{name}'")
