# prunequant in a CUDA container: the pinned dependencies on a CUDA runtime, run as a non-root user, with
# the repository mounted at /workspace so that outputs and the DVC cache live on the host:
#   make docker-build            (or: docker build -t prunequant .)
#   make docker-repro            (or: docker run --rm --gpus all -v "$PWD":/workspace -u "$(id -u):$(id -g)" prunequant)
# BASE is any image with apt (Debian/Ubuntu); air-gapped machines pass a local one: --build-arg BASE=...
ARG BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE}

# Where torch comes from: the CUDA build matching the base image (CPU-only bases: .../whl/cpu; empty: the
# same indexes as the other packages). PIP_* (unset by default) point pip at a mirror, local wheels or a
# proxy's CA bundle where PyPI is out of reach.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ARG UID=1000

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/workspace/src \
    PRUNEQUANT_SETUP=skip \
    HF_HOME=/workspace/.cache/huggingface

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Versions come from the base image's distribution; the Python packages below are pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git make ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory /workspace

COPY requirements.txt /opt/prunequant/requirements.txt
RUN python3 -m venv /opt/venv \
    && if [ -n "${TORCH_INDEX}" ]; then \
        pip install "torch==$(sed -n 's/^torch==//p' /opt/prunequant/requirements.txt)" --index-url "${TORCH_INDEX}"; \
    fi \
    && pip install -r /opt/prunequant/requirements.txt \
    && pip check \
    && python -c "import torch; print('torch', torch.__version__, '- CUDA build:', torch.version.cuda or 'none, a CPU image (TORCH_INDEX was empty)')"

# The repository is mounted here at run time; the code in it (src/) is what runs.
# (Ubuntu bases ship a user "ubuntu" with UID 1000: it makes way.)
RUN if getent passwd "${UID}" >/dev/null; then userdel --remove "$(getent passwd "${UID}" | cut -d: -f1)"; fi \
    && useradd --create-home --uid "${UID}" --shell /bin/bash prunequant \
    && mkdir -p /workspace && chown prunequant /workspace
USER ${UID}
WORKDIR /workspace
VOLUME ["/workspace"]

CMD ["dvc", "repro"]
