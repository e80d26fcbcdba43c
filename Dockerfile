# bidsfusion as a BIDS App image (docs/containers.md).
#
#   docker build -t bidsfusion/bidsfusion:0.1.0 .                                  # CPU torch
#   docker build --build-arg TORCH_VARIANT=cu128 -t bidsfusion/bidsfusion:0.1.0-cu128 .
#   docker run --rm -v /data:/data:ro -v /out:/out bidsfusion/bidsfusion:0.1.0 /data /out participant
#
# Build arguments: VERSION (the OCI version label; keep it equal to bidsfusion.__version__),
# TORCH_VERSION (2.13.0), TORCH_VARIANT (cpu; cuXYZ or rocmX.Y for the matching index of
# download.pytorch.org, pypi for pip's configured index): see docker/install.sh.
# pip's own settings reach both stages as build arguments: PIP_INDEX_URL,
# PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST (a mirror or a local wheel folder:
# docker build --build-arg PIP_INDEX_URL=https://mirror/simple ...).
# The image runs as uid 1000: OUTPUT_DIR (and synth's target) must be writable by it,
# or run with --user "$(id -u):$(id -g)"; otherwise bidsfusion exits 73.
# Nothing is downloaded at run time: nilearn ships the MNI template, nipype's version
# check is off.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- stage 1: the bidsfusion wheel ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
ARG PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_TRUSTED_HOST
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bidsfusion ./bidsfusion
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- stage 2: the runtime ------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_TRUSTED_HOST

LABEL org.opencontainers.image.title="bidsfusion" \
      org.opencontainers.image.description="BIDS App: self-supervised multimodal (T1w + fALFF) brain representations with contrastive objectives" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/bidsfusion/bidsfusion" \
      org.opencontainers.image.url="https://github.com/bidsfusion/bidsfusion" \
      org.opencontainers.image.documentation="https://github.com/bidsfusion/bidsfusion/blob/main/docs/containers.md" \
      org.opencontainers.image.licenses="BSD-3-Clause"

COPY docker/install.sh /tmp/install.sh
COPY --from=wheel /wheels /tmp/wheels
RUN PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    TORCH_VERSION="${TORCH_VERSION}" TORCH_VARIANT="${TORCH_VARIANT}" \
    bash /tmp/install.sh /opt/bidsfusion /tmp/wheels/bidsfusion-*.whl \
    && rm -rf /tmp/install.sh /tmp/wheels \
    && useradd --create-home --uid 1000 --user-group --shell /bin/bash bidsfusion

# OMP_NUM_THREADS / MKL_NUM_THREADS: one thread per process unless overridden with
# `docker run -e OMP_NUM_THREADS=4 ...` or bidsfusion's --omp-nthreads.
# BIDSFUSION_CONTAINER is recorded in OUTPUT_DIR/dataset_description.json (GeneratedBy).
# MPLCONFIGDIR: matplotlib's cache stays writable under any --user.
ENV PATH="/opt/bidsfusion/bin:${PATH}" \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    NIPYPE_NO_ET=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONUNBUFFERED=1 \
    BIDSFUSION_CONTAINER="docker://bidsfusion/bidsfusion:${VERSION}"

USER 1000:1000
WORKDIR /home/bidsfusion
ENTRYPOINT ["bidsfusion"]
CMD ["--help"]
