# syntax=docker/dockerfile:1
# One image for the three services, with the entry points a laptop uses:
#   python -m services.intake | services.dedupe | services.dispatch     serve (uvicorn)
#   python -m services.<name> migrate                                   apply its migrations
#   python -m services.cli.main ...                                     the panui CLI
# Reproducible: a pinned base (pin its digest when releasing: --build-arg PYTHON_IMAGE=...@sha256:...),
# dependencies only from requirements.lock with their hashes and as wheels (no compiler, no sdist),
# nothing fetched at run time. No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The venv gets no pip or setuptools of its own (ensurepip's bundled setuptools is old, vulnerable and in
# no lock): the base image's pip installs into it, so the image holds exactly what `make audit` checks.
RUN python -m venv --without-pip /opt/panui
COPY requirements.lock /tmp/requirements.lock
RUN python -m pip --python /opt/panui/bin/python install --no-deps --require-hashes --only-binary=:all: \
      -r /tmp/requirements.lock
COPY services/ /app/services/
# Byte-compile here: the root filesystem is read-only at run time.
RUN /opt/panui/bin/python -m compileall -q --invalidation-mode checked-hash /app/services

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 panui \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin panui
COPY --from=build /opt/panui /opt/panui
COPY --from=build /app /app
ENV PATH=/opt/panui/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PANUI_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
EXPOSE 8001 8002 8003
CMD ["python", "-m", "services.cli.main", "--help"]
