"""`pstream contracts init`: the wizard proposes the shipped workshop contract from the notebook's
example_input.csv without questions, answers questions through a pseudo-terminal, infers repeated
and nested fields from JSONL, finds personal data by its values, reads samples in a bounded way,
and never prints a sampled value."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pexpect
import pytest
import yaml

from cli.main import main
from conftest import WEBSHOP, repo_env
from contracts import load_contract
from contracts.infer import check_sample, profile_rows, propose, read_sample
from contracts.regex import compile_regex
from pipelines.example_data import generate_webshop, write_webshop_csv

REF = "acme/Shop/1.0.0"


@pytest.fixture
def cli(capsys, monkeypatch):
    """`pstream contracts ...` in this process: (exit code, stdout, stderr); stdin is the given text."""
    def run(*argv, stdin: str = ""):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(["contracts", *argv])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out.out, out.err)
    return run


@pytest.fixture(scope="module")
def example_input(tmp_path_factory):
    path = tmp_path_factory.mktemp("wizard") / "example_input.csv"
    write_webshop_csv(path, records=3000, customers=500, products=50, seed=42)
    return path


def shape(contract):
    return [(n.name, n.type, n.repeated, n.required) for n in contract.nodes]


def accepted_values(contract, field, candidates):
    (validation,) = [v for v in contract.validations if v.field == field]
    return {c for c in candidates if compile_regex(validation.regex).fullmatch(c)}


def test_example_input_gives_the_shipped_contract_without_questions(example_input, tmp_path):
    out = tmp_path / "proposed.yaml"
    result = subprocess.run([sys.executable, "-m", "cli", "contracts", "init", "--from", str(example_input),
                             "--ref", WEBSHOP, "--yes", "-o", str(out)], env=repo_env(), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shipped, proposed = load_contract(WEBSHOP), load_contract(str(out))
    assert shape(proposed) == shape(shipped)                      # names, types, repeated, required
    assert proposed.key_field == shipped.key_field == "userId"
    assert proposed.data_subject_field == shipped.data_subject_field
    assert proposed.pii == shipped.pii                            # the PII set and its purpose levels
    assert proposed.quasi_ids == shipped.quasi_ids == ("age",)
    sizes = ["XS", "S", "M", "L", "XL", "XXL", "xs", "", "S|M"]
    assert accepted_values(proposed, "tshirtSize", sizes) == accepted_values(shipped, "tshirtSize", sizes)
    assert proposed.state == "DRAFT" and proposed.ref == WEBSHOP
    assert "accepts 1000 of the 1000 sampled rows" in result.stderr      # checked by THE validator
    assert "the file has more: --max-rows" in result.stderr


def test_the_wizard_never_prints_or_writes_a_sampled_personal_value(cli, example_input, tmp_path):
    out = tmp_path / "c.yaml"
    result = cli("init", "--from", str(example_input), "--ref", REF, "--yes", "-o", str(out), "--max-rows", "200")
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr + out.read_text()
    rows = list(generate_webshop(records=200, customers=500, products=50, seed=42))
    for row in rows:
        for field in ("userId", "email", "fullName", "phoneNumber", "address", "transactionId"):
            assert str(row[field]) not in shown, field


def test_an_interactive_session_through_a_pseudo_terminal(example_input, tmp_path):
    out = tmp_path / "asked.yaml"
    child = pexpect.spawn(sys.executable, ["-m", "cli", "contracts", "init", "--from", str(example_input),
                                           "--ref", REF, "-o", str(out), "--max-rows", "500"],
                          env=repo_env(), encoding="utf-8", timeout=60)
    try:
        child.expect(r"Types to change \(FIELD=TYPE,...\): ")
        child.sendline("totalItems=LONG")
        child.expect(r"Key field .*\[userId\]: ")
        child.sendline("nosuchfield")                       # a wrong answer is explained and asked again
        child.expect("not in the sample")
        child.expect(r"Key field .*\[userId\]: ")
        child.sendline("")                                  # Enter keeps the proposal
        answers = {"userId": "", "email": "3", "fullName": "n", "phoneNumber": "", "address": ""}
        for _ in answers:
            child.expect(r"  (\w+) \(.*\): purpose level \[(\d)\]: ")
            child.sendline(answers[child.match.group(1)])
        child.expect(r"More PII fields \(FIELD=LEVEL,...\): ")
        child.sendline("transactionId=1")
        child.expect(r"Quasi-identifiers .*\[age\]: ")
        child.sendline("-")
        child.expect(r"tshirtSize: regex .*\[\^\(L\|M\|S\|XL\|XS\)\$\]: ")
        child.sendline("^(S|M|L)$")
        child.expect(r"accepts (\d+) of the 500 sampled rows")
        assert int(child.match.group(1)) < 500             # XS and XL are refused now, and it says so
        child.expect(r"refused: field 'tshirtSize'")
        child.expect(r"Write it to .*\? \(y/n\) \[y\]: ")
        child.sendline("y")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    contract = load_contract(str(out))
    assert contract.pii == {"transactionId": 1, "userId": 1, "email": 3, "phoneNumber": 2, "address": 2}
    assert contract.quasi_ids == () and contract.key_field == "userId"
    assert contract.node("totalItems").type == "LONG"
    assert [v.regex for v in contract.validations] == ["^(S|M|L)$"]


def test_quitting_or_no_answer_writes_nothing(cli, example_input, tmp_path):
    out = tmp_path / "never.yaml"
    result = cli("init", "--from", str(example_input), "--ref", REF, "-o", str(out))   # no input at all
    assert result.returncode == 1 and "aborted: no answer" in result.stderr and "--yes" in result.stderr
    assert not out.exists()
    result = cli("init", "--from", str(example_input), "--ref", REF, "-o", str(out), stdin="\nq\n")  # Enter, q
    assert result.returncode == 1 and "aborted; nothing written" in result.stderr and not out.exists()


def test_flags_make_every_choice_without_questions(cli, example_input, tmp_path):
    out = tmp_path / "flags.yaml"
    result = cli("init", "--from", str(example_input), "--ref", REF, "--yes", "-o", str(out),
                 "--key-field", "email", "--pii", "userId=none,age=3,fullName=1", "--quasi-ids", "-",
                 "--types", "transactionAmount=FLOAT")
    assert result.returncode == 0, result.stderr
    contract = load_contract(str(out))
    assert contract.key_field == contract.data_subject_field == "email" and contract.node("email").required
    assert contract.pii == {"email": 2, "age": 3, "fullName": 1, "phoneNumber": 2, "address": 2}
    assert contract.node("age").type == "STRING"     # PII is encrypted text; the CSV's digits stay text
    assert contract.quasi_ids == () and contract.node("transactionAmount").type == "FLOAT"
    assert "age: typed STRING instead of INTEGER" in result.stderr
    assert cli("init", "--from", str(example_input), "--ref", REF, "--yes", "-o", str(out)).returncode == 2  # exists
    for bad, message in [(["--pii", "email=two"], "not a purpose level"), (["--key-field", "items"], "repeated"),
                         (["--key-field", "nope"], "not in the sample"), (["--ref", "a/b"], "handle/name/1.2.3")]:
        result = cli("init", "--from", str(example_input), "--ref", REF, "--yes", *bad)
        assert result.returncode == 2 and message in result.stderr, (bad, result.stderr)


def test_jsonl_repeated_and_nested_fields(tmp_path):
    rows = [{"customerId": f"c{i % 7}", "score": i / 3, "big": 2**40 + i, "ok": i % 2 == 0,
             "tags": ["a", "b"][: i % 3], "address": {"street": f"{i} Main Street", "zip": "1234AB"},
             "orders": [{"orderId": f"o{i}", "amount": i}], "empty": None, "strmMeta": {"nonce": 1}}
            for i in range(40)]
    sample = tmp_path / "events.jsonl"
    sample.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = read_sample(sample)
    assert found.format == "jsonl" and len(found.rows) == 40 and "strmMeta" not in found.rows[0]
    proposal = propose(profile_rows(found.rows, text=found.text), REF)
    contract = proposal.contract()
    assert shape(contract) == [("customerId", "STRING", False, True), ("score", "FLOAT", False, False),
                               ("big", "LONG", False, False), ("ok", "BOOLEAN", False, False),
                               ("tags", "STRING", True, False), ("address", "NODE", False, False),
                               ("orders", "NODE", True, False), ("empty", "STRING", False, False)]
    assert [(n.name, n.type) for n in contract.node("address").nodes] == [("street", "STRING"), ("zip", "STRING")]
    assert [(n.name, n.type) for n in contract.node("orders").nodes] == [("orderId", "STRING"), ("amount", "INTEGER")]
    assert contract.key_field == "customerId"
    assert contract.pii == {"customerId": 1, "address/street": 2} and contract.quasi_ids == ("address/zip",)
    assert "empty: no values in the sample; typed STRING" in proposal.notes
    assert check_sample(contract, found.rows, text=False) == (40, {})


def test_csv_cells_with_lists_and_objects(tmp_path):
    sample = tmp_path / "s.csv"
    lines = ["userId,scores,codes,profile"]
    lines += [f'u{i % 5},"[{i}, {i + 1}]","[\'x\', \'y\']","{{""city"": ""Utrecht"", ""age"": {i}}}"'
              for i in range(30)]
    sample.write_text("\n".join(lines) + "\n")
    found = read_sample(sample)
    contract = propose(profile_rows(found.rows), REF).contract()
    assert shape(contract)[1:3] == [("scores", "INTEGER", True, False), ("codes", "STRING", True, False)]
    assert [(n.name, n.type) for n in contract.node("profile").nodes] == [("city", "STRING"), ("age", "INTEGER")]
    assert set(contract.quasi_ids) == {"profile/city", "profile/age"}
    assert check_sample(contract, found.rows) == (30, {})


def test_personal_data_found_by_its_values_under_uninformative_names(tmp_path):
    ibans = ["NL91ABNA0417164300", "DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606"]
    sample = tmp_path / "s.csv"
    lines = ["memberId,c1,c2,c3,c4,c5,birthDate,note"]
    for i in range(40):
        lines.append(f"m{i % 9},person{i}@example.org,+31 6 1234 56{i:02d},10.0.{i}.1,{ibans[i % 4]},"
                     f"{i + 1} Sandra Vista Apt. {i},19{50 + i}-01-0{1 + i % 9},nothing to see {i}")
    sample.write_text("\n".join(lines) + "\n")
    proposal = propose(profile_rows(read_sample(sample).rows), REF)
    assert proposal.pii == {"memberId": 1, "c1": 2, "c2": 2, "c3": 1, "c4": 3, "c5": 2, "birthDate": 3}
    assert "IP address (identifiers): 100% of 40 values look like one" in proposal.reasons["c3"]
    assert proposal.key_field == "memberId" and "note" not in proposal.pii


def test_ids_stay_text_and_event_ids_are_not_the_key(tmp_path):
    sample = tmp_path / "s.csv"
    sample.write_text("orderId,customerId,amount,zip\n" + "".join(
        f"{1000 + i},{7000 + i % 4},{i}.5,0{1000 + i}\n" for i in range(20)))
    proposal = propose(profile_rows(read_sample(sample).rows), REF)
    contract = proposal.contract()
    assert shape(contract) == [("orderId", "STRING", False, True), ("customerId", "STRING", False, True),
                               ("amount", "FLOAT", False, False), ("zip", "STRING", False, False)]  # '01000'
    assert contract.key_field == "customerId" and "orderId" not in contract.pii


def test_samples_are_read_in_a_bounded_way(cli, tmp_path):
    sample = tmp_path / "big.jsonl"
    with open(sample, "w") as handle:
        handle.write(json.dumps({"userId": "a", "x": "y" * (2 << 20)}) + "\n")   # one line over the bound
        handle.write("not json\n[1, 2]\n")
        for i in range(50):
            handle.write(json.dumps({"userId": f"u{i}"}) + "\n")
    found = read_sample(sample, max_rows=10)
    assert len(found.rows) == 10 and found.more
    assert found.skipped == {"a line longer than 1,048,576 characters": 1, "not valid JSON": 1,
                             "not a JSON object": 1}
    bad = tmp_path / "bad.csv"
    bad.write_text("user id,email\n1,a@b.c\n")
    result = cli("init", "--from", str(bad), "--ref", REF, "--yes")
    assert result.returncode == 2 and "field names must start with a letter" in result.stderr
    assert "'user id'" in result.stderr
