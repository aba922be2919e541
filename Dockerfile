# The explorer and the worker in one image (CPU). docker compose up starts it against Postgres.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker worker
COPY backend backend
COPY frontend frontend
COPY migrations migrations
COPY alembic.ini ./
COPY data data
RUN pip install --no-cache-dir -e ".[worker,postgres]"
EXPOSE 8000
CMD ["recsae", "demo", "--host", "0.0.0.0"]
