"""Deployment: the flex template's files, DataflowRunner dry runs, and the Flink runner API.

No cloud and no cluster: the DataflowRunner translates the batch graph and the Pub/Sub streaming
graph offline (``--dry_run=True --no_auth``, project demo-project); the FlinkRunner's job proto
round-trips through the runner API for each SDK environment type; the flex template's Dockerfile,
metadata.json and requirements are checked against the code they describe.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from cloud_servers import unique_name
from conftest import REPO, repo_env, setup_kwargs
from pipelines.config import ConfigError, load_config
from pipelines.graph import build_batch_graph
from pipelines.options import PrivacyPipelineOptions
from pipelines.stream_options import StreamingSourceOptions
from pipelines.streaming import build_streaming_graph, stream_source
from stream_events import EVENTS, WEBSHOP
from transforms.stream_sources import ParseMessages, ReadKafkaEvents, ReadPubSubEvents

DATAFLOW = ["--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project=demo-project",
            "--region=europe-west1", "--temp_location=gs://demo-bucket/tmp"]
REMOTE = {"output": "gs://demo-bucket/out", "key_store": "postgresql://beam@keys.internal/keys",
          "kek": "gcp-kms://projects/demo-project/locations/global/keyRings/shop/cryptoKeys/kek"}
SUBSCRIPTION = "projects/demo-project/subscriptions/shop-events"


def option_actions() -> list[argparse.Action]:
    parser = argparse.ArgumentParser()
    PrivacyPipelineOptions._add_argparse_args(parser)
    StreamingSourceOptions._add_argparse_args(parser)
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


# -- the flex template's files ------------------------------------------------------------------
def test_dockerfile_uses_the_python_launcher_and_sets_its_variables():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM gcr\.io/dataflow-templates-base/python311-template-launcher-base\s*$", text, re.M)
    workdir = re.search(r"^ARG WORKDIR=(\S+)$", text, re.M).group(1)
    env = {name: value.replace("${WORKDIR}", workdir)
           for name, value in re.findall(r'^ENV (FLEX_TEMPLATE_PYTHON_\w+)="([^"]+)"$', text, re.M)}
    assert env == {"FLEX_TEMPLATE_PYTHON_PY_FILE": f"{workdir}/main.py",
                   "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE": f"{workdir}/requirements.txt",
                   "FLEX_TEMPLATE_PYTHON_SETUP_FILE": f"{workdir}/setup.py"}
    # every file the variables name is copied into the image, with every package setup.py ships
    copied = " ".join(re.findall(r"^COPY (.+)$", text, re.M))
    for source in ("setup.py", "templates/main.py", "templates/requirements.txt", "src"):
        assert re.search(rf"(^|\s){re.escape(source)}(\s|$)", copied), source
    assert re.search(r"pip install --no-cache-dir '\.\[[a-z,]+\]'", text) and re.search(r"^ENV PIP_NO_DEPS=True$", text, re.M)
    main = (REPO / "templates" / "main.py").read_text()
    assert "from pipelines.run import main" in main and '__name__ == "__main__"' in main


def test_worker_requirements_match_setup_py():
    captured = setup_kwargs()
    declared = {re.split(r"[\[<>=]", r, maxsplit=1)[0].lower(): r for r in captured["install_requires"]}
    lines = [line.strip() for line in (REPO / "templates" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines, "templates/requirements.txt lists no package"
    for line in lines:
        name = re.split(r"[\[<>=]", line, maxsplit=1)[0].lower()
        assert declared.get(name) == line, f"{line} is not in setup.py's install_requires as such"
    assert not any(line.startswith("apache-beam") for line in lines)   # the SDK image has Beam


def test_metadata_json_lists_every_pipeline_option_with_its_help():
    metadata = json.loads((REPO / "templates" / "metadata.json").read_text())
    params = {p["name"]: p for p in metadata["parameters"]}
    actions = {a.dest: a for a in option_actions()}
    assert sorted(params) == sorted(actions), "templates/metadata.json and the PipelineOptions differ"
    for name, action in actions.items():
        param = params[name]
        assert param["label"] and param["isOptional"] is True, name
        assert param["helpText"] == action.help, f"{name}: helpText differs from the option's help"
        patterns = [re.compile(r) for r in param["regexes"]]
        if action.choices:
            for choice in action.choices:
                assert all(p.fullmatch(choice) for p in patterns), (name, choice)
            assert not any(p.fullmatch("other") for p in patterns), name


@pytest.mark.parametrize("name, good, bad", [
    ("pubsub_subscription", SUBSCRIPTION, "shop-events"),
    ("pubsub_topic", "projects/demo-project/topics/shop", "projects/demo-project/subscriptions/s"),
    ("export_interval", "60", "29"), ("export_interval", "3600", "3601"), ("export_interval", "30", "0"),
    ("kafka_bootstrap_servers", "kafka-1:9092,kafka-2:9092", "kafka-1"),
    ("contract", WEBSHOP, "webshop"), ("contract", "gs://bucket/contracts/shop.yaml", "shop.json"),
    ("key_store", "postgresql://beam@db/keys", "keys.sqlite"),
    ("partition_by_day", "true", "maybe"), ("allowed_lateness", "0", "-5"), ("export_shards", "4", "0"),
])
def test_metadata_regexes(name, good, bad):
    param = {p["name"]: p for p in json.loads((REPO / "templates" / "metadata.json").read_text())["parameters"]}[name]
    assert all(re.fullmatch(r, good) for r in param["regexes"])
    assert not all(re.fullmatch(r, bad) for r in param["regexes"])


# -- DataflowRunner dry runs --------------------------------------------------------------------
def dataflow_job(build, flags=()):
    options = PipelineOptions([*DATAFLOW, *flags])
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)
    return pipeline.run().job


def transform_names(proto) -> set[str]:
    return {t.unique_name for t in proto.components.transforms.values()}


def test_the_batch_graph_translates_for_dataflow_with_the_setup_file(tmp_path):
    config = load_config(None, {"input": "gs://demo-bucket/in/*.csv", **REMOTE})
    job = dataflow_job(lambda p, _: build_batch_graph(p, config), [f"--setup_file={REPO / 'setup.py'}"])
    assert job.proto.type.name == "JOB_TYPE_BATCH"
    names = transform_names(job.proto_pipeline)
    for step in ("ReadInput", "ValidateEvents", "EncryptPii", "PrivacyStreams", "Write encrypted",
                 "Write streams/webshop-1", "Write keys", "Write dead_letter"):
        assert step in names, step
    staged = {}
    for environment in job.proto_pipeline.components.environments.values():
        assert environment.urn == common_urns.environments.DOCKER.urn
        for dependency in environment.dependencies:
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dependency.type_payload).path
            role = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dependency.role_payload)
            staged[role.staged_name] = path
    # the setup file became the workers' package, with the contracts and the default config in it
    with tarfile.open(staged["workflow.tar.gz"]) as package:
        members = package.getnames()
    for needed in ("contracts/strmprivacy/PrivacyEngineeringWorkshop/1.0.0.yaml", "pipelines/webshop.yaml",
                   "transforms/windowed_export.py", "pipelines/connectors.py"):
        assert any(m.endswith(needed) for m in members), needed


def test_the_pubsub_streaming_graph_translates_for_dataflow():
    config = load_config(None, REMOTE)
    flags = ["--streaming", f"--pubsub_subscription={SUBSCRIPTION}", "--payload_format=avro",
             "--pubsub_timestamp_attribute=strmTimestamp", "--allowed_lateness=120"]
    job = dataflow_job(lambda p, o: build_streaming_graph(p, config, o.view_as(StreamingSourceOptions)), flags)
    assert job.proto.type.name == "JOB_TYPE_STREAMING"
    transforms = job.proto_pipeline.components.transforms.values()
    reads = [beam_runner_api_pb2.PubSubReadPayload.FromString(t.spec.payload) for t in transforms
             if t.spec.urn == common_urns.composites.PUBSUB_READ.urn]
    assert [(r.subscription, r.timestamp_attribute, r.with_attributes) for r in reads] == [
        (SUBSCRIPTION, "strmTimestamp", True)]
    stateful = [t.unique_name for t in transforms if t.spec.urn == common_urns.primitives.PAR_DO.urn
                and beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload).timer_family_specs]
    # the one lateness decision, the event-time writers, the processing-time writers of keys and dead letters
    assert sorted(n.split("/ParDo(")[0] for n in stateful) == [
        "AdmitInTime/Decide", "Write dead_letter/WriteBatches", "Write encrypted every 60s/WriteDueWindows",
        "Write keys every 60s/WriteBatches", "Write streams/webshop-1 every 60s/WriteDueWindows",
        "Write streams/webshop-2 every 60s/WriteDueWindows"]


def test_the_launcher_command_submits_batch_and_streaming_dry_runs(gcs_server, tmp_path):
    """What the flex template runs (pipelines.run's main), with the input on the GCS emulator."""
    bucket = gcs_server.create_bucket(unique_name("dataflow"))
    gcs_server.client().bucket(bucket).blob("in/shop.csv").upload_from_string(
        "transactionId,userId,email,age,tshirtSize,fullName,phoneNumber,address,transactionAmount,items,"
        "totalItems,date,purposeConsent\n1,u1,a@b.c,30,M,N,5,S,1,\"[1]\",1,2024-01-01 00:00:00,2\n")
    env = {**repo_env(), **gcs_server.beam_env(tmp_path)}
    common = [*DATAFLOW, f"--output=gs://{bucket}/out", f"--key_store={REMOTE['key_store']}", f"--kek={REMOTE['kek']}"]
    batch = subprocess.run([sys.executable, str(REPO / "templates" / "main.py"), *common,
                            f"--input=gs://{bucket}/in/*.csv"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    assert "submitted to DataflowRunner: no job id (dry run)" in batch.stdout
    # a Pub/Sub parameter alone makes it a streaming job (template parameters can't carry --streaming)
    streaming = subprocess.run([sys.executable, str(REPO / "templates" / "main.py"), *common,
                                f"--pubsub_subscription={SUBSCRIPTION}"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
    assert streaming.returncode == 0, streaming.stdout + streaming.stderr
    assert "starting streaming job" in streaming.stdout and "submitted: no job id (dry run)" in streaming.stdout


# -- Flink ---------------------------------------------------------------------------------------
class _CreatedMessages(beam.PTransform):
    """Gateway messages from memory: stands in for ReadFromKafka, which needs Java to expand."""

    def expand(self, pbegin):
        from contracts import load_contract
        messages = [(f"kafka:events/0@{i}", json.dumps(e).encode(), {}) for i, e in enumerate(EVENTS)]
        return pbegin | beam.Create(messages) | ParseMessages({WEBSHOP: load_contract(WEBSHOP)})


FLINK_ENVIRONMENTS = {
    "DOCKER": ("apache/beam_python3.11_sdk:2.77.0", common_urns.environments.DOCKER.urn),
    "PROCESS": ('{"command": "/opt/apache/beam/boot"}', common_urns.environments.PROCESS.urn),
    "EXTERNAL": ("localhost:50000", common_urns.environments.EXTERNAL.urn),
}


@pytest.mark.parametrize("mode", ["batch", "streaming"])
@pytest.mark.parametrize("environment_type", sorted(FLINK_ENVIRONMENTS))
def test_the_graph_round_trips_through_the_runner_api_with_flink_options(mode, environment_type):
    from apache_beam.runners.portability.flink_runner import FlinkRunner
    config_value, urn = FLINK_ENVIRONMENTS[environment_type]
    flags = ["--runner=FlinkRunner", "--flink_master=flink-jobmanager:8081", "--parallelism=2",
             f"--environment_type={environment_type}", f"--environment_config={config_value}"]
    config = load_config(None, {"input": "/data/shop/*.csv", "output": "/data/out",
                                "key_store": "sqlite:///data/keys.sqlite", "kek": "local:///secrets/kek.json"})
    options = PipelineOptions(flags + (["--streaming"] if mode == "streaming" else []))
    pipeline = beam.Pipeline(options=options)
    assert isinstance(pipeline.runner, FlinkRunner)
    if mode == "batch":
        build_batch_graph(pipeline, config)
    else:
        build_streaming_graph(pipeline, config, options.view_as(StreamingSourceOptions), source=_CreatedMessages())
    proto = FlinkRunner.get_proto_pipeline(pipeline, options)   # what the runner submits to the job server
    restored = beam.Pipeline.from_runner_api(proto, pipeline.runner, options)
    again = restored.to_runner_api()
    assert transform_names(again) == transform_names(proto)
    assert {e.urn for e in proto.components.environments.values()} == {urn}
    if mode == "streaming":
        payloads = [beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
                    for t in again.components.transforms.values()
                    if t.spec.urn == common_urns.primitives.PAR_DO.urn and "WriteDueWindows" in t.unique_name]
        assert payloads and all(set(p.state_specs) == {"buffer", "closed_until", "next_flush"} for p in payloads)
        assert all(set(p.timer_family_specs) == {"ts-flush"} for p in payloads)   # event-time timer "flush"


def test_kafka_source_is_built_from_the_options_without_expanding_it():
    config = load_config(None, {})
    options = PipelineOptions(["--streaming", "--kafka_bootstrap_servers=kafka-1:9092,kafka-2:9092",
                               "--kafka_topics=shop-events, returns", "--payload_format=avro",
                               '--kafka_consumer_config={"security.protocol": "SSL"}',
                               "--kafka_expansion_service=localhost:8097"]).view_as(StreamingSourceOptions)

    class Exporter:
        include_existing_events = True

    source = stream_source(config, options, [Exporter()])
    assert isinstance(source, ReadKafkaEvents)
    assert source.topics == ["shop-events", "returns"] and source.payload_format == "avro"
    assert source.consumer_config == {"bootstrap.servers": "kafka-1:9092,kafka-2:9092",
                                      "auto.offset.reset": "earliest", "security.protocol": "SSL"}
    read = source.kafka_read()   # constructing the cross-language transform needs no Java
    assert read._urn == read.URN_WITH_METADATA
    for expected in (b"kafka-1:9092,kafka-2:9092", b"shop-events", b"returns", b"earliest", b"CreateTime"):
        assert expected in read._payload, expected
    assert stream_source(config, options, []).consumer_config["auto.offset.reset"] == "latest"


@pytest.mark.parametrize("flags, message", [
    ([], "exactly one source"),
    ([f"--pubsub_subscription={SUBSCRIPTION}", "--kafka_bootstrap_servers=k:9092"], "exactly one source"),
    (["--kafka_bootstrap_servers=k:9092"], "needs both"),
    (["--kafka_bootstrap_servers=k:9092", "--kafka_topics=t", "--kafka_consumer_config=[1]"], "JSON object"),
])
def test_stream_source_options_are_checked(flags, message):
    options = PipelineOptions(flags).view_as(StreamingSourceOptions)
    with pytest.raises(ConfigError, match=message):
        stream_source(load_config(None, {}), options)


def test_pubsub_source_from_a_topic():
    options = PipelineOptions(["--pubsub_topic=projects/demo-project/topics/shop"]).view_as(StreamingSourceOptions)
    source = stream_source(load_config(None, {}), options)
    assert isinstance(source, ReadPubSubEvents) and source.topic == "projects/demo-project/topics/shop"


def test_flink_launch_script_passes_runner_and_environment_flags():
    script = REPO / "templates" / "flink_run.sh"
    env = {**os.environ, "PRINT_ONLY": "1", "FLINK_MASTER": "jm:8081", "ENVIRONMENT_TYPE": "EXTERNAL",
           "ENVIRONMENT_CONFIG": "localhost:50000", "FLINK_VERSION": "1.19", "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(script), "--streaming", "--kafka_topics", "events"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in ("-m pipelines.run", "--runner=FlinkRunner", "--flink_master=jm:8081", "--environment_type=EXTERNAL",
                 "--environment_config=localhost:50000", "--flink_version=1.19", "--streaming", "--kafka_topics events"):
        assert flag in out.stdout, flag
    docker = subprocess.run(["bash", str(script)], env={**env, "ENVIRONMENT_TYPE": "DOCKER", "ENVIRONMENT_CONFIG": ""},
                            capture_output=True, text=True, timeout=60)
    assert f"--environment_config=apache/beam_python3.11_sdk:{beam.__version__}" in docker.stdout
    bad = subprocess.run(["bash", str(script)], env={**env, "ENVIRONMENT_TYPE": "LOOPBACK"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "DOCKER, PROCESS or EXTERNAL" in bad.stderr
