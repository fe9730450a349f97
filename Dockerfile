# syntax=docker/dockerfile:1
# Every Tripline image, one target per service, built from the repository root:
#
#     docker build --build-arg SERVICE=core --target core -t tripline/core .
#
# (`make images` builds them all.) An image holds only its own service's dependencies: SERVICE
# names the package to install, the target its entrypoint. The syntax line brings a frontend
# with COPY --parents (1.20) whatever the engine's own.

FROM python:3.11.16-slim-trixie AS base

FROM base AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
# Byte-code is compiled here because the running image may not write it (read-only root, and
# PYTHONDONTWRITEBYTECODE). The venv must use the base image's interpreter, which the runtime
# has too, never one uv downloads. Files are copied out of the cache: it is a separate mount,
# so hard links to it cannot work.
ENV UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
WORKDIR /app
# uv reads the whole workspace even to install one member, so every member's manifest comes
# first: the dependency layer below then survives any change that leaves them and the lock alone.
COPY --parents pyproject.toml uv.lock libs/*/pyproject.toml services/*/pyproject.toml \
    tools/*/pyproject.toml ./
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "pass --build-arg SERVICE=<service>" >&2; exit 1; }
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "tripline-${SERVICE}"
COPY libs libs
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "tripline-${SERVICE}"

FROM base AS runtime
RUN groupadd --gid 10001 tripline \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tripline
# The venv of the service being built (SERVICE), at the path it was built at so that the
# scripts in its bin/ keep working; owned by root, so the service cannot change its own code.
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST=0.0.0.0
WORKDIR /app
# Numeric, so that Kubernetes can check runAsNonRoot against the image itself.
USER 10001:10001
# The entrypoints below run Python as PID 1, in exec form, so SIGTERM reaches it: the web
# services drain (DRAIN_SECONDS) and then stop uvicorn, the worker shuts Celery down warm.
STOPSIGNAL SIGTERM

FROM runtime AS gateway
EXPOSE 8080
ENTRYPOINT ["python", "-m", "tripline.gateway"]

FROM runtime AS core
EXPOSE 8081
ENTRYPOINT ["python", "-m", "tripline.core"]

FROM runtime AS upload
EXPOSE 8082
ENTRYPOINT ["python", "-m", "tripline.upload"]

FROM runtime AS tracking
EXPOSE 8083
ENTRYPOINT ["python", "-m", "tripline.tracking"]

FROM runtime AS monitor
EXPOSE 8084
ENTRYPOINT ["python", "-m", "tripline.monitor"]

# Only the stand-in payment and notification providers, for staging and load tests.
FROM runtime AS sandbox
EXPOSE 8090
ENTRYPOINT ["python", "-m", "tripline.sandbox"]

FROM runtime AS worker
# The health endpoint is off by default (the local stack runs two workers on one host); a
# container has its own network, so the image turns it on for the probes.
ENV WORKER_HEALTH_PORT=8086
EXPOSE 8086
ENTRYPOINT ["python", "-m", "tripline.worker"]
