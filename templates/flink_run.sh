#!/usr/bin/env bash
# Run the privacy pipeline on a Flink cluster with Beam's FlinkRunner (batch or streaming).
#
#   FLINK_MASTER=flink-jobmanager:8081 templates/flink_run.sh \
#       --config pipeline.yaml --input '/data/shop/*.csv' --output /data/out \
#       --key_store sqlite:///data/keys.sqlite --kek local:///secrets/kek.json
#   FLINK_MASTER=flink-jobmanager:8081 ENVIRONMENT_TYPE=EXTERNAL ENVIRONMENT_CONFIG=localhost:50000 \
#     templates/flink_run.sh --streaming --kafka_bootstrap_servers kafka:9092 --kafka_topics events \
#       --output /data/out --key_store ... --kek ...
#
# Settings (environment variable: meaning [default]):
#   FLINK_MASTER        the JobManager's REST address, host:port [localhost:8081]
#   FLINK_VERSION       Flink version of the cluster, picks Beam's job server for it [Beam's default]
#   ENVIRONMENT_TYPE    where the Python SDK workers run, next to Flink's task managers [DOCKER]
#                         DOCKER   each task manager starts the SDK container itself (needs Docker there)
#                         PROCESS  each task manager runs the SDK boot program installed on its host
#                         EXTERNAL task managers connect to SDK worker pools you run beside them
#   ENVIRONMENT_CONFIG  DOCKER: the SDK image [apache/beam_python<X.Y>_sdk:<Beam version>, as installed]
#                       PROCESS: JSON, e.g. {"command": "/opt/apache/beam/boot"}
#                       EXTERNAL: host:port of the worker pool [localhost:50000]
#   PARALLELISM         parallelism of the job [2]
#   PYTHON              the Python with this package and apache-beam installed [python3]
#   PRINT_ONLY=1        print the command instead of running it
# Any other argument goes to `python -m pipelines.run` (see --help); Beam starts the Flink job
# server for FLINK_VERSION itself, which needs Java 11+ on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
FLINK_MASTER="${FLINK_MASTER:-localhost:8081}"
ENVIRONMENT_TYPE="${ENVIRONMENT_TYPE:-DOCKER}"
PARALLELISM="${PARALLELISM:-2}"
case "$ENVIRONMENT_TYPE" in
  DOCKER)
    if [ -z "${ENVIRONMENT_CONFIG:-}" ]; then
      sdk="$("$PYTHON" -c 'import sys, apache_beam; print(f"{sys.version_info[0]}.{sys.version_info[1]}_sdk:{apache_beam.__version__}")')"
      ENVIRONMENT_CONFIG="apache/beam_python${sdk}"
    fi ;;
  PROCESS) ENVIRONMENT_CONFIG="${ENVIRONMENT_CONFIG:-{\"command\": \"/opt/apache/beam/boot\"\}}" ;;
  EXTERNAL) ENVIRONMENT_CONFIG="${ENVIRONMENT_CONFIG:-localhost:50000}" ;;
  *) echo "ENVIRONMENT_TYPE must be DOCKER, PROCESS or EXTERNAL, not '$ENVIRONMENT_TYPE'" >&2; exit 2 ;;
esac

command=("$PYTHON" -m pipelines.run --runner=FlinkRunner "--flink_master=$FLINK_MASTER"
         "--environment_type=$ENVIRONMENT_TYPE" "--environment_config=$ENVIRONMENT_CONFIG"
         "--parallelism=$PARALLELISM")
if [ -n "${FLINK_VERSION:-}" ]; then
  command+=("--flink_version=$FLINK_VERSION")
fi
command+=("$@")

if [ "${PRINT_ONLY:-0}" = "1" ]; then
  printf '%q ' "${command[@]}"
  echo
  exit 0
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "${command[@]}"
