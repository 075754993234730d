# longlive-rtc on a CUDA base image. Build:  docker build -t longlive-rtc .
# Run through docker-compose.yml (GPU reserved, host networking, coturn beside it).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY pyproject.toml README.md ./
COPY longlive_rtc ./longlive_rtc
COPY signaling ./signaling
# torch's Linux wheels bring their CUDA libraries; the `gpu` extra (flash-attn) is optional:
#   docker build --build-arg EXTRAS=gpu .
ARG EXTRAS=""
RUN pip install ".${EXTRAS:+[$EXTRAS]}"

# Weights are mounted here (see `longlive-rtc download --dir`); the Inductor cache survives restarts.
VOLUME ["/weights", "/cache"]
ENV LONGLIVE_RTC_WEIGHTS=/weights \
    TORCHINDUCTOR_CACHE_DIR=/cache/inductor

EXPOSE 8080
ENTRYPOINT ["longlive-rtc"]
CMD ["serve", "--generator", "longlive"]
