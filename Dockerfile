# The UBI application image: web, workers, beat and flower all run from it (see Procfile).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini celeryconfig.py ./
COPY ubi ./ubi
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
RUN useradd --create-home ubi && mkdir -p /var/lib/ubi && chown ubi /var/lib/ubi
USER ubi
EXPOSE 8000
CMD ["gunicorn", "-c", "python:ubi.web.gunicorn_conf", "ubi.web.wsgi:app"]
