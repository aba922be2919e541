# The explorer and the worker in one image (CPU). docker-compose.yml runs it as its migrate, worker
# and backend services (each with its own command) against Postgres; alone, `docker run` serves
# the demo (CMD below).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY worker worker
COPY backend backend
COPY frontend frontend
COPY migrations migrations
COPY alembic.ini ./
COPY data data
RUN pip install --no-cache-dir -e ".[worker,postgres]"
EXPOSE 8000
# The server listens on every interface of the container, so it needs an admin account (README
# "Accounts and security"): RECSAE_ADMIN_PASSWORD (a secret, no default) creates or checks the
# admin RECSAE_ADMIN_USER (default "admin") at every start. Without it the server refuses to
# start, unless RECSAE_READ_ONLY=true (then nothing can be changed from the web).
CMD ["sh", "-c", "if [ -n \"$RECSAE_ADMIN_PASSWORD\" ]; then recsae accounts ensure-admin \"${RECSAE_ADMIN_USER:-admin}\" || exit 1; fi; exec recsae demo --host 0.0.0.0"]
