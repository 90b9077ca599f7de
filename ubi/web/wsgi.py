"""WSGI entry point for gunicorn: ``gunicorn -c python:ubi.web.gunicorn_conf ubi.web.wsgi:app``."""

from ubi.web.app import create_app

app = create_app()
