"""A FastAPI app instrumented by prometheus-fastapi-instrumentator, as its README shows, with
pytheus's ``patch_client`` first: under uvicorn's workers it counts across processes."""

import prometheus_client

from pytheus.compat import patch_client

patch_client(prometheus_client)

from fastapi import FastAPI  # noqa: E402
from prometheus_fastapi_instrumentator import Instrumentator  # noqa: E402

app = FastAPI()


@app.get("/items/{item_id}")
def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


Instrumentator().instrument(app).expose(app)
