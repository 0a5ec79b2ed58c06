# The fundflow image (fundflow:local in deploy/compose.yaml; by hand:
# `docker build -t fundflow:local .` from the repository root).
#
# Two stages. `build` has the compiler: it installs the locked dependency tree
# (requirements/runtime.txt, every file checked against its hash) into a venv
# at /opt/fundflow, builds the package's wheel with the lock's setuptools
# and setuptools-rust (the wheel holds the compiled fundflow._core, from the
# Rust crate core/ built with Debian's cargo, which fetches the crates of
# core/Cargo.lock, and links with build-essential's cc), and installs that
# wheel into the same venv without resolving anything more. The runtime stage
# is a slim Python with no compiler that receives the finished venv. The lock
# is installed where the compiler is because not every locked package has a
# wheel for every platform (faust-streaming 0.15.3 has none for aarch64), and
# a locally built wheel would not match the lock's hashes in a later stage.
# tests/e2e/test_wheel.py runs the same install into a fresh venv;
# tests/unit/test_image.py checks what this file copies.

# Both stages use the same Python, so the venv's interpreter links resolve.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cargo \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The lock on its own first, so that this layer is rebuilt only when it changes.
COPY requirements/runtime.txt requirements/runtime.txt
RUN python -m venv /opt/fundflow \
    && /opt/fundflow/bin/pip install --require-hashes -r requirements/runtime.txt
COPY pyproject.toml setup.py README.md ./
COPY fundflow fundflow
COPY schemas schemas
COPY detectors detectors
COPY streams streams
COPY core core
RUN /opt/fundflow/bin/pip wheel --no-deps --no-build-isolation -w /wheels . \
    && /opt/fundflow/bin/pip install --no-deps /wheels/fundflow-*.whl

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --home-dir /var/lib/fundflow --create-home fundflow
COPY --from=build /opt/fundflow /opt/fundflow
ENV PATH=/opt/fundflow/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# An image whose commands cannot start is not tagged.
RUN python -c "import fundflow._core, fundflow.detectors.reference" \
    && fundflow --help > /dev/null \
    && fundflow worker --help > /dev/null
USER fundflow
WORKDIR /var/lib/fundflow
CMD ["fundflow", "--help"]
