"""`charrnn serve`: trained models behind OpenAI's Completions API, with continuous
batching, and a playground page. Needs the `serve` extra (FastAPI, uvicorn).

    config.py       ServeConfig: address and bounds (the command's options)
    models.py       which checkpoints are served, under which ids, and their cards
    jobs.py         a request as the engine sees it, and the text it hands back
    batch.py        one model's running batch: rows join and leave between steps
    engine.py       the worker thread that owns the models and steps every batch
    protocol.py     the request, answer and error shapes of OpenAI's API
    completions.py  POST /v1/completions: one JSON answer, or Server-Sent Events
    guards.py       the body size limit, and validation errors in one line
    metrics.py      GET /metrics in Prometheus' format
    app.py          the FastAPI app: routes, API key, CORS, the page
    static/         the playground page: HTML, CSS and JavaScript, no build step

Nothing here imports click or rich; `charrnn.cli.serve` is the command.
"""
