"""The HTTP service answers like `doctune predict` and turns bad uploads into 422s."""

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from doctune.inference import load_predictor
from doctune.serve import create_app


@pytest.fixture(scope="module")
def predictor():
    return load_predictor("doctune-tiny", max_new_tokens=4, precision="fp32")


@pytest.fixture(scope="module")
def client(predictor):
    return TestClient(create_app(predictor, "doctune-tiny"))


def _png(size=(120, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, "PNG")
    return buffer.getvalue()


def test_health_names_the_model(client):
    assert client.get("/health").json() == {"status": "ok", "model": "doctune-tiny"}


def test_predict_gives_the_same_answer_as_the_predictor(client, predictor):
    response = client.post("/predict", files={"image": ("page.png", _png())}, data={"question": "Total?"})
    assert response.status_code == 200
    expected = predictor.answer([Image.open(io.BytesIO(_png())).convert("RGB")], ["Total?"])[0]
    assert response.json() == {"question": "Total?", "answer": expected, "page": 1}


def test_predict_reads_a_pdf_page(client):
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), "white").save(buffer, "PDF", save_all=True, append_images=[Image.new("RGB", (100, 100))])
    response = client.post("/predict", files={"image": ("two.pdf", buffer.getvalue())},
                           data={"question": "Total?", "page": "2"})
    assert response.status_code == 200 and response.json()["page"] == 2


def test_a_bad_upload_is_a_422_naming_the_file(client):
    response = client.post("/predict", files={"image": ("scan.png", b"not an image")}, data={"question": "Q?"})
    assert response.status_code == 422 and "scan.png" in response.json()["detail"]


def test_an_empty_question_is_refused(client):
    response = client.post("/predict", files={"image": ("page.png", _png())}, data={"question": "  "})
    assert response.status_code == 422
