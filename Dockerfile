# One image for every service: `gridcall serve <service>`, `gridcall migrate`, `gridcall topics`,
# or `gridcall run` (embedded). Built in two stages: the wheel and its dependencies are installed
# into a virtual environment, which alone is copied into a slim runtime run by a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY services services
COPY intake intake
COPY dispatcher dispatcher
COPY departments departments
COPY notifier notifier
COPY gridcall gridcall
RUN python -m venv /opt/gridcall \
    && /opt/gridcall/bin/pip install --no-cache-dir /src

FROM python:3.11-slim
RUN groupadd --system --gid 10001 gridcall \
    && useradd --system --uid 10001 --gid gridcall --home-dir /var/lib/gridcall --create-home gridcall
COPY --from=build /opt/gridcall /opt/gridcall
ENV PATH=/opt/gridcall/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GRIDCALL_HOST=0.0.0.0 \
    GRIDCALL_VAR_DIR=/var/lib/gridcall
USER 10001
WORKDIR /var/lib/gridcall
EXPOSE 8000
# Liveness only: the process answers (/readyz is the orchestrator's readiness probe).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('GRIDCALL_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["gridcall"]
CMD ["run"]
