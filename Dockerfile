# One image per role: `--build-arg EXTRAS=api` (no torch) or `EXTRAS=worker`.
FROM python:3.11-slim
ARG EXTRAS=api
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY api api
COPY worker worker
COPY db db
COPY training training
COPY cli cli
COPY models models
RUN pip install --no-cache-dir -e ".[${EXTRAS}]"
RUN useradd --create-home wardrobe
USER wardrobe
