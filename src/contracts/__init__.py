"""Data contracts: the YAML model, event checks and the Avro mapping. No Beam imports.

    from contracts import load_contract
    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")
"""
from contracts.loader import ContractError, list_contracts, load_contract, parse_contract
from contracts.model import Contract, Node

__all__ = ["Contract", "ContractError", "Node", "list_contracts", "load_contract", "parse_contract"]
