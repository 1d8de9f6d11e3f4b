# Communs node. Build: docker build -t communs .     (podman: podman build --format docker -t communs .)
# Run:   docker run -d -p 7470:7470 -v communs-data:/data communs
# The node initialises /data on first start (`communs run --init-if-missing`; README.md, "Docker").
#
# Two stages. py-libp2p 0.8.1 needs fastecdsa, which PyPI has as source only (no Linux wheel), so the
# first stage has a C compiler and GMP's headers and turns every dependency into a wheel; the second
# installs those wheels with --no-index and keeps no compiler, headers, pip cache or apt lists. What
# is left is the slim Python base and the Python packages py-libp2p and Communs need (the largest:
# grpcio, pycryptodome, cryptography, uvloop), their C extensions stripped of debug symbols, compiled to
# .pyc once at build time because the node's user cannot write them at run time. fastecdsa's one
# run-time library, libgmp10, is already in the base.

FROM python:3.11-slim AS wheels
# So that builders can remove this stage's image (it holds the compiler) once the build is done.
LABEL org.communs.stage=wheels

# A package index other than PyPI, where the build machine must use one: --build-arg PIP_INDEX_URL=...
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Versions come from the base image's Debian release; pinning them here would break with its updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libgmp-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY node ./node
COPY protocol ./protocol
COPY storage ./storage
COPY governance ./governance
RUN pip wheel --wheel-dir /wheels .

# Many wheels ship their C extensions with debug symbols (uvloop's 13.6 MB is 1.9 MB without them): strip
# them and repack those wheels (`wheel pack` writes their new RECORD), then note every wheel's checksum.
RUN pip install wheel==0.45.1 \
    && mkdir /tmp/unpacked \
    && for whl in /wheels/*.whl; do \
         python -m wheel unpack --dest /tmp/unpacked "$whl" >/dev/null \
         && dir="$(find /tmp/unpacked -mindepth 1 -maxdepth 1)" \
         && if [ -n "$(find "$dir" -name '*.so')" ]; then \
              find "$dir" -name '*.so' -exec strip --strip-debug {} + \
              && rm "$whl" \
              && python -m wheel pack --dest-dir /wheels "$dir" >/dev/null; \
            fi \
         && rm -rf "$dir" || exit 1; \
       done \
    && sha256sum /wheels/*.whl > /wheels.sha256


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A real user and group 10001 (both with entries, so `id` and file listings name them); /data is theirs.
RUN groupadd --system --gid 10001 communs \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin communs \
    && mkdir -p /data \
    && chown 10001:10001 /data \
    && chmod 0700 /data

# The wheels are mounted from the first stage, not copied, so that they take no room in a layer. Their
# checksums are copied: a builder that keys its cache of the RUN on the command alone (buildah does)
# then still installs new wheels when they changed, and the RUN checks that it mounted those.
COPY --from=wheels /wheels.sha256 /usr/local/share/communs/wheels.sha256
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    sha256sum --quiet -c /usr/local/share/communs/wheels.sha256 \
    && pip install --no-index /wheels/*.whl

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# libp2p (TCP); the admin API stays inside the container unless you publish it.
EXPOSE 7470

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["communs", "healthcheck", "--data", "/data"]

ENTRYPOINT ["communs"]
CMD ["run", "--data", "/data", "--init-if-missing"]
