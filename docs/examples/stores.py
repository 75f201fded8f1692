"""Giving Flask-Spark a grant store of the app's own: its database engine, a Redis client."""

import redis
import sqlalchemy as sa
from flask import Flask

from flask_spark import RedisGrantStore, Spark, SQLGrantStore


def spark_in_the_apps_database(app: Flask, database_url: str) -> Spark:
    # The app's own engine (with Flask-SQLAlchemy, db.engine inside an app context).
    # Flask-Spark adds its spark_ tables on first use and touches no other (on SQLite,
    # its rate table goes to a file beside the database: app-rate.db beside app.db).
    engine = sa.create_engine(database_url, pool_pre_ping=True)
    return Spark(app, grant_store=SQLGrantStore(engine))


def spark_in_its_own_redis(app: Flask, redis_url: str) -> Spark:
    # Sessions wherever Flask-Session keeps them; grants in this Redis, as portal:spark:...
    client = redis.Redis.from_url(redis_url)
    return Spark(app, grant_store=RedisGrantStore(client, prefix="portal:spark:"))
