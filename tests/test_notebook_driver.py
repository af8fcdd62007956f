"""The notebook's driver code (section 2.3.2), with only the import lines and credentials changed,
sends generated web shop rows through a gateway on a free port; the pipeline then holds them
all, encrypted."""
from __future__ import annotations

import base64
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from cli.schema_code import build_zip
from contracts import load_contract
from controlplane.project import Project
from controlplane.realtime import LocalLoop
from gateway_helpers import WEBSHOP, GatewayProcess, make_project, read_spool, repo_env
from pipelines.example_data import write_webshop_csv

ROWS = 120

# Copied from the notebook (shared/seed), cell "Creating and sending the events".
NOTEBOOK_CODE = '''
import logging
import sys
import time
import pandas as pd

from strmprivacy.driver.client.syncsender import SyncSender
from strmprivacy.driver.serializer import SerializationType
# Note: if you want to use your own data contract, adapt the schema code installation commands accordingly, 
# and replace "PrivacyEngineeringWorkshop" by your contract's schema name.
from strmprivacy_A_A_v.A.A.v import PrivacyEngineeringWorkshop

def create_avro_event(row):
    # Here we convert each row of generated data into the event objects matching our schema.
    # If you use your own contract, you will need to make the appropriate changes below.
    event = PrivacyEngineeringWorkshop()
    
    event.strmMeta.eventContractRef = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
    event.strmMeta.consentLevels = [int(row['purposeConsent'])]
    
    event.transactionId = str(row['transactionId'])
    event.userId = str(row['userId'])
    event.email = str(row['email'])
    event.age = int(row['age'])
    event.tshirtSize = str(row['tshirtSize'])
    event.fullName = str(row['fullName'])
    event.phoneNumber = str(row['phoneNumber'])
    event.address = str(row['address'])
    event.transactionAmount = int(row['transactionAmount'])
    event.items = row['items']
    event.date = str(row['date'])
    event.totalItems = int(row['totalItems'])
    event.purposeConsent = int(row['purposeConsent'])

    return event

def main():
    logging.basicConfig(stream=sys.stdout)
    logger = logging.getLogger(__name__)
    
    # To send all records, remove the .head() call
    records = pd.read_csv("example_input.csv")

    # Use your Pipeline's credentials here.
    sender = SyncSender("<your_client_id>", "<your_client_secret>")
    sender.start()

    sender.wait_ready()

    for row in records.iterrows():
        event = create_avro_event(row[1])
        response = sender.send_event(event)

        if response != None:
            logger.error(response)
#         print(event)
        time.sleep(0.002)
    
    time.sleep(2)
    print("Finished sending events")

if __name__ == '__main__':
    main()
'''

IMPORT_CHANGES = {
    "from strmprivacy.driver.client.syncsender import SyncSender": "from driver.client.syncsender import SyncSender",
    "from strmprivacy.driver.serializer import SerializationType": "from driver.serializer import SerializationType",
    "from strmprivacy_A_A_v.A.A.v import PrivacyEngineeringWorkshop":
        "from strmprivacy_privacyengineeringworkshop_v1_0_0 import PrivacyEngineeringWorkshop",
}


def install_schema_code(tmp_path: Path) -> Path:
    """`pstream get schema-code` + unzip + `make install` (into a target directory)."""
    name, data = build_zip(load_contract(WEBSHOP))
    (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / name) as archive:
        archive.extractall(tmp_path)
    site = tmp_path / "site"
    folder = tmp_path / name[: -len(".zip")]
    result = subprocess.run(["make", "install", f"PIP_ARGS=--target {site} --no-deps -q", f"PYTHON={sys.executable}"],
                            cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return site


def test_notebook_driver_code_sends_every_row_and_the_pipeline_encrypts_them(tmp_path):
    pytest.importorskip("pandas")
    site = install_schema_code(tmp_path)
    write_webshop_csv(tmp_path / "example_input.csv", records=ROWS, customers=40, products=20, seed=5)
    project_dir = tmp_path / "project"
    make_project(project_dir, "webshop")
    with GatewayProcess(project_dir) as gw:
        client_id, secret = gw.credentials("webshop")
        code = NOTEBOOK_CODE
        for old, new in IMPORT_CHANGES.items():
            assert old in code
            code = code.replace(old, new)
        code = code.replace("<your_client_id>", client_id).replace("<your_client_secret>", secret)
        changed = [line for line in code.splitlines() if line not in NOTEBOOK_CODE.splitlines()]
        assert len(changed) == 4  # three imports and the credentials line, nothing else
        (tmp_path / "send.py").write_text(code)
        env = repo_env(PSTREAM_GATEWAY_URL=gw.url)
        env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
        result = subprocess.run([sys.executable, "send.py"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Finished sending events" in result.stdout
        assert "ERROR" not in result.stdout, result.stdout[-2000:]
    spooled = [orjson.loads(line) for line in read_spool(project_dir, "webshop")]
    assert len(spooled) == ROWS
    assert all(isinstance(e["items"], list) and e["strmMeta"]["nonce"] for e in spooled)

    # the pipeline (python -m pipelines.run over the spool segments) then holds them all, encrypted
    assert LocalLoop(project_dir).step() == ROWS
    encrypted_dir = Project.open(project_dir).output_dir("webshop") / "encrypted"
    encrypted = [orjson.loads(line) for f in sorted(encrypted_dir.glob("*.jsonl")) for line in f.read_bytes().splitlines()]
    assert len(encrypted) == ROWS
    plain = {e["transactionId"]: e for e in spooled}
    assert set(plain) == {e["transactionId"] for e in encrypted}
    contract = load_contract(WEBSHOP)
    for event in encrypted:
        original = plain[event["transactionId"]]
        assert event["strmMeta"]["keyLink"]
        for field in contract.pii:
            assert event[field] != original[field]
            assert base64.b64decode(event[field])[0] == 1  # Tink output prefix
        assert event["items"] == original["items"] and event["age"] == original["age"]
    assert LocalLoop(project_dir).step() == 0  # segments are processed once
