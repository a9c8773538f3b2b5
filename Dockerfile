# syntax=docker/dockerfile:1
# Tidegate controller image: `tidegate controller`, `tidegate dashboard`, `tidegate version`.
#
# Base: the official Python image at an exact version tag (3.11.14, Debian 12 "bookworm", slim).
# Pin it by digest too when building for release: this repository was written without registry
# access, so no digest could be read and verified here (see charts/tidegate/README.md, "Image").
# Both stages use the same base so the wheel's compiled dependencies match the runtime's ABI.
ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
# The sync module renders Helm and Kustomize sources with the real binaries (gitops/render.py):
# static builds copied from their publishers' images, at the versions e2e/cluster/build.sh pins.
ARG HELM_IMAGE=docker.io/alpine/helm:3.18.6
ARG KUSTOMIZE_IMAGE=registry.k8s.io/kustomize/kustomize:v5.7.1

FROM ${HELM_IMAGE} AS helm
FROM ${KUSTOMIZE_IMAGE} AS kustomize

# --- build: the wheel and every dependency as wheels -------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common ./common
COPY rollouts ./rollouts
COPY analysis ./analysis
COPY gitops ./gitops
COPY notifications ./notifications
COPY views ./views
COPY dashboard ./dashboard
COPY cli ./cli
RUN pip wheel --wheel-dir /wheels .

# --- runtime: the installed wheel, git for the sync module, nothing else -------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp TMPDIR=/tmp
# git: the sync module fetches Application sources with the git binary (gitops/source.py);
# Debian 12's versions, pinned (bump them with the base image)
ARG GIT_VERSION=1:2.39.5-0+deb12u3
ARG CA_CERTIFICATES_VERSION=20250419~deb12u2
RUN apt-get update \
    && apt-get install -y --no-install-recommends "git=${GIT_VERSION}" \
       "ca-certificates=${CA_CERTIFICATES_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 tidegate \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tidegate
COPY --from=helm /usr/bin/helm /usr/local/bin/helm
COPY --from=kustomize /app/kustomize /usr/local/bin/kustomize
COPY --from=build /wheels /wheels
ARG TIDEGATE_VERSION=0.1.0
RUN pip install --no-index --find-links=/wheels "tidegate==${TIDEGATE_VERSION}" && rm -rf /wheels
USER 65532:65532
# metrics (--metrics-port) and /healthz,/readyz (--healthz-port)
EXPOSE 8090 8080
ENTRYPOINT ["tidegate"]
CMD ["controller"]
