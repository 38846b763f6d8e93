# CPU image of the nmt translation service (`nmt serve`); the model is mounted at /model.
#   docker build -t nmt-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/base:/model:ro" -e NMT_API_KEY=change-me nmt-serve --threads 2
# GPU variant: --build-arg TORCH_INDEX=<a CUDA wheel index of pytorch.org>, run with --gpus all ... --device cuda.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NMT_PORT=8000

# torch first, from the CPU-only wheel index: its own cached layer, and no CUDA libraries in the image
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

# then every other package at the version and hash of the lock (requirements/main.txt, the runtime half of the
# versions CI passed with), and nmt itself without dependencies
WORKDIR /app
COPY requirements/main.txt requirements/main.txt
RUN awk '/^torch==/ {skip = 1; next} skip && /^ / {next} {skip = 0; print}' requirements/main.txt > /tmp/lock.txt \
    && pip install --require-hashes --no-deps -r /tmp/lock.txt && rm /tmp/lock.txt
COPY pyproject.toml README.md ./
COPY nmt ./nmt
COPY serve ./serve
RUN pip install --no-deps --no-build-isolation . \
    && pip check \
    && useradd --system --no-create-home --uid 10001 nmt

USER nmt
VOLUME ["/model"]
EXPOSE 8000
# SIGINT is LitServe's clean shutdown (nmt serve also turns SIGTERM into it)
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-c", "import os, sys, urllib.request as r; k = os.environ.get('NMT_API_KEY'); q = r.Request('http://127.0.0.1:' + os.environ.get('NMT_PORT', '8000') + '/health', headers={'X-API-Key': k} if k else {}); sys.exit(0 if r.urlopen(q, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["nmt", "serve", "--model", "/model", "--host", "0.0.0.0"]
