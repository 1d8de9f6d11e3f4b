# Communs node. Build: docker build -t communs .
# Run:   docker run -d -p 7470:7470 -v communs-data:/data communs
# The node initialises /data on first start (see docker-entrypoint in README.md, "Docker").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY node ./node
COPY protocol ./protocol
COPY storage ./storage
COPY governance ./governance
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin communs \
    && mkdir -p /data \
    && chown communs:communs /data

USER 10001:10001
VOLUME ["/data"]
# libp2p (TCP); the admin API stays inside the container unless you publish it.
EXPOSE 7470

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["communs", "healthcheck", "--data", "/data"]

ENTRYPOINT ["communs"]
CMD ["run", "--data", "/data", "--init-if-missing"]
