# One image for both roles. API:    docker run -p 8080:8080 IMAGE
#                           Worker: docker run IMAGE media-pipeline worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MP_DATA_DIR=/data MP_HOST=0.0.0.0 MP_PORT=8080

WORKDIR /app
# The runtime lock first, in its own layer: a code change does not reinstall the dependencies.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md api.py ./
COPY config ./config
COPY media_pipeline ./media_pipeline
COPY workers ./workers
# Built with the locked setuptools, no other release fetched; pip check: the lock covers pyproject.toml.
RUN pip install --no-deps --no-build-isolation . \
 && pip check \
 && useradd --system --uid 10001 --home-dir /data --create-home media \
 && chown media /data

USER media
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
CMD ["media-pipeline", "api"]
