"""Data contracts: the YAML model, event checks and the Avro mapping. No Beam imports.

    from contracts import load_contract, load_contract_ref
    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")   # a reference or a file
    contract = load_contract_ref(ref_from_a_request)                           # a reference only
"""
from contracts.loader import ContractError, list_contracts, load_contract, load_contract_ref, parse_contract
from contracts.model import Contract, Node

__all__ = ["Contract", "ContractError", "Node", "list_contracts", "load_contract", "load_contract_ref",
           "parse_contract"]
