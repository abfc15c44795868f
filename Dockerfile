# trio-router in a container: the config mounted at /app/config.json, as the seed README shows:
#     docker build -t trio-router .
#     docker run -p 3456:3456 -e APIKEY=... -v "$(pwd)/config.json:/app/config.json:ro" trio-router
# Two stages: the first installs the project and its PostgreSQL driver into a virtualenv, the
# second copies only that virtualenv onto a clean base, so no build tools or pip caches ship.
# BASE_IMAGE is any Debian-like image with python3 >= 3.11 and its venv module on PATH; where no
# registry is reachable, make one locally (tests/test_docker.py does: debootstrap + docker import).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# pip reads these from the environment; the build passes them through to a local index when
# PyPI is out of reach (https://pip.pypa.io/en/stable/topics/configuration/#environment-variables).
ARG PIP_INDEX_URL
ARG PIP_NO_INDEX
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md constraints.txt ./
COPY trio_router ./trio_router
# A non-editable install builds the wheel and installs it; constraints.txt pins the versions
# the test suite ran on. The postgres extra is STORE_URL=postgresql://... (store/postgres.py).
# pip and setuptools are only needed to install: removed, they ship neither size nor CVEs.
RUN python3 -m venv /opt/trio-router \
    && /opt/trio-router/bin/pip install '.[postgres]' -c constraints.txt \
    && /opt/trio-router/bin/pip uninstall --yes pip setuptools \
    && /opt/trio-router/bin/trio-router --version

FROM ${BASE_IMAGE}
# A fixed, unprivileged uid/gid, so a host directory for /data can be chown'ed to it.
RUN groupadd --system --gid 10001 router \
    && useradd --system --uid 10001 --gid router --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin router \
    && mkdir -p /app /data \
    && chown router:router /data
COPY --from=build /opt/trio-router /opt/trio-router
# CONFIG_PATH and TRIO_ROUTER_DATA_DIR: where `trio-router start` finds the config and keeps
# logs/ and usage.sqlite3 (cli.py, state.data_dir). HOST and PORT override the config's own
# (config.py, as the seed README says). TRIO_ROUTER_REQUIRE_APIKEY=1: without an APIKEY the
# router refuses to start instead of falling back to 127.0.0.1, which no one outside the
# container could reach.
ENV PATH=/opt/trio-router/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONFIG_PATH=/app/config.json \
    TRIO_ROUTER_DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=3456 \
    TRIO_ROUTER_REQUIRE_APIKEY=1
VOLUME ["/data"]
WORKDIR /app
USER router:router
EXPOSE 3456
# SIGTERM drains: open streams finish for up to DRAIN_TIMEOUT_MS (default 30 s), so give
# `docker stop` a longer --time (compose.yaml: stop_grace_period).
STOPSIGNAL SIGTERM
# GET / answers 200 while serving and 503 while draining; urlopen raises on either a refused
# connection or an error status, so the check fails then. The image has no curl: Python's urllib.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3456') + '/', timeout=4)"]
ENTRYPOINT ["trio-router"]
CMD ["start"]
