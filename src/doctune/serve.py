"""``doctune serve``: answer questions about uploaded pages over HTTP.

The service wraps the same :class:`~doctune.inference.Predictor` as ``doctune predict`` and
``doctune eval``, so answers match theirs. It never imports training code.

Endpoints:
    GET  /health   -> {"status": "ok", "model": ...}
    POST /predict  multipart form: ``image`` (PNG, JPEG, TIFF, WebP or PDF file), ``question``,
                   optional ``page`` (1-based) -> {"question", "answer", "page"}
"""

import threading

from fastapi import FastAPI, File, Form, HTTPException, UploadFile

from doctune import __version__
from doctune.images import ImageLoadError, decode_image_bytes
from doctune.inference import Predictor


def create_app(predictor: Predictor, model_name: str) -> FastAPI:
    """A FastAPI app serving ``predictor``; run it with uvicorn."""
    app = FastAPI(title="doctune", version=__version__, description="Document question answering")
    # One model, one generate() at a time: requests queue here instead of interleaving on the device.
    lock = threading.Lock()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model_name}

    @app.post("/predict")
    def predict(image: UploadFile = File(...), question: str = Form(...), page: int = Form(1)) -> dict:
        if not question.strip():
            raise HTTPException(status_code=422, detail="question is empty")
        try:
            page_image = decode_image_bytes(image.file.read(), image.filename or "upload", page)
        except ImageLoadError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        with lock:
            answer = predictor.answer([page_image], [question])[0]
        return {"question": question, "answer": answer, "page": page}

    return app
