# interview-gateway: one image for the gateway (and its simulated upstream).
# Slim, non-root, with a HEALTHCHECK on /healthz. Build: docker build -t interview-gateway .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY signaling ./signaling
COPY storage ./storage
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# libopus/libvpx come inside the av wheel; nothing else is needed at run time.
RUN useradd --create-home --uid 10001 gateway
COPY --from=build /install /usr/local
USER gateway
WORKDIR /home/gateway
ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_DATA_DIR=/home/gateway/data \
    PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
CMD ["interview-gateway", "serve", "--no-invite"]
