# Terminal 1: the simulated Spark platform, http://127.0.0.1:5001 (Ctrl-C stops it)
python -m flask_spark.testing
# Terminal 2, next to quickstart.py and .env: the portal, http://127.0.0.1:5000
flask --app quickstart run
