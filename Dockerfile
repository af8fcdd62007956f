# The Dataflow flex template image of the privacy pipeline: one image for batch and streaming jobs.
#
#   gcloud builds submit --tag "$REGION-docker.pkg.dev/$PROJECT/$REPO/privacy-streams:latest" .
#   (or: docker build -t ... . && docker push ...); templates/README.md has the build and launch steps.
#
# The launcher runs main.py with the template's parameters as --name=value flags; main.py builds
# the graph and submits it. Workers get this package through setup.py (Beam builds and stages it)
# and the few packages the Beam SDK image lacks through requirements.txt.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base

ARG WORKDIR=/template
WORKDIR ${WORKDIR}

COPY setup.py ./
COPY src ./src
COPY templates/main.py templates/requirements.txt templates/metadata.json ./

# The launcher's three variables: the Python file it runs, the worker requirements it stages, and
# the setup file that ships this package to the workers (Beam passes --setup_file).
ENV FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/main.py"
ENV FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE="${WORKDIR}/requirements.txt"
ENV FLEX_TEMPLATE_PYTHON_SETUP_FILE="${WORKDIR}/setup.py"

# Install the package (and Beam) for the launcher, with the workshop extra so that the image also
# runs `pstream` (tests/test_packaging.py builds an environment with this same line); download the
# worker requirements once, so a launch does not fetch them again. Workers get install_requires only.
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir '.[workshop]' \
 && pip download --no-cache-dir --dest /tmp/dataflow-requirements-cache -r requirements.txt

# Everything is installed: pip must not resolve dependencies again when the launcher stages them.
ENV PIP_NO_DEPS=True
