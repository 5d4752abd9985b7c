"""Alembic's environment for the job store: migrate the connection the store hands over, or a URL.

The store runs ``upgrade head`` itself at start-up (:func:`multishap.service.jobstore.store.migrate`);
maintainers writing a new revision run ``alembic -c service/jobstore/migrations/alembic.ini revision
--autogenerate -m "..."`` with ``-x url=sqlite:///scratch.db``.
"""

from alembic import context
from sqlalchemy import create_engine

from multishap.service.jobstore.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as own:
        context.configure(connection=own, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        own.commit()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
