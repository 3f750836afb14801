# The movierec CLI: `docker compose run --rm movierec nightly /data/ml-latest-small` (see docker-compose.yml).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# torch first, the CPU wheel, pinned: unpinned, pip pulls gigabytes of CUDA packages.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY movierec movierec
COPY ingest ingest
COPY cf cf
COPY batch batch
RUN pip install .

# An ordinary user, so files written to the bind-mounted data directory are not owned by root.
RUN useradd --create-home --uid 1000 movierec && mkdir -p /data/movierec && chown -R movierec /data
USER movierec
WORKDIR /data

ENV MOVIEREC_HOME=/data/movierec
ENTRYPOINT ["movierec"]
CMD ["--help"]
