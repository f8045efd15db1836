"""Tests for doctune.images; every test file is generated in tmp_path."""

import io
import os

import pytest
from PIL import Image, features

from doctune.images import ImageLoadError, decode_image_bytes, load_page, to_rgb

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def _close(actual, expected, tolerance=8):
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


def _save(path, image, fmt=None, **params):
    image.save(path, fmt, **params)
    return path


def _noise_png_bytes(size=64):
    image = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _two_page_pdf(path):
    first = Image.new("RGB", (100, 50), RED)
    second = Image.new("RGB", (100, 50), BLUE)
    first.save(path, "PDF", save_all=True, append_images=[second], resolution=72)
    return path


def _minimal_pdf(objects, trailer_extra=b""):
    """Assemble a PDF by hand with a correct cross-reference table."""
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R " % (len(objects) + 1) + trailer_extra + b" >>\n"
    return out + b"startxref\n%d\n%%%%EOF\n" % xref


def _encrypted_pdf_bytes():
    """A PDF with a standard-security dictionary whose user password is not empty."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>",
    ]
    file_id = b"<" + b"33" * 16 + b">"
    return _minimal_pdf(objects, b"/Encrypt 4 0 R /ID [" + file_id + file_id + b"]")


@pytest.mark.parametrize(
    ("suffix", "fmt"),
    [
        (".png", "PNG"),
        (".jpg", "JPEG"),
        (".tif", "TIFF"),
        pytest.param(
            ".webp",
            "WEBP",
            marks=pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP"),
        ),
    ],
)
def test_raster_formats_load_as_rgb(tmp_path, suffix, fmt):
    path = _save(tmp_path / f"page{suffix}", Image.new("RGB", (30, 20), RED), fmt)
    image = load_page(path)
    assert image.mode == "RGB"
    assert image.size == (30, 20)
    assert _close(image.getpixel((10, 10)), RED)


def test_greyscale_and_one_bit_become_rgb(tmp_path):
    grey = load_page(_save(tmp_path / "grey.png", Image.new("L", (4, 4), 100)))
    bilevel = load_page(_save(tmp_path / "bw.png", Image.new("1", (4, 4), 1)))
    assert grey.mode == bilevel.mode == "RGB"
    assert grey.getpixel((0, 0)) == (100, 100, 100)
    assert bilevel.getpixel((0, 0)) == WHITE


def test_multipage_tiff_selects_frame(tmp_path):
    path = tmp_path / "scan.tiff"
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (12, 8), BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    second = load_page(path, page=2)
    assert second.size == (12, 8)
    assert second.getpixel((0, 0)) == BLUE
    with pytest.raises(ImageLoadError, match=r"scan\.tiff: page 3 requested but the file has 2 pages"):
        load_page(path, page=3)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")
    image = load_page(path)
    assert image.mode == "RGB"
    assert _close(image.getpixel((8, 8)), RED, tolerance=16)


def test_sixteen_bit_png_scales_instead_of_clipping(tmp_path):
    image = Image.new("I;16", (2, 1))
    image.putpixel((0, 0), 32768)  # mid-grey in 16 bits
    image.putpixel((1, 0), 65535)
    loaded = load_page(_save(tmp_path / "deep.png", image))
    assert loaded.mode == "RGB"
    mid = loaded.getpixel((0, 0))
    assert mid[0] == mid[1] == mid[2]
    assert 127 <= mid[0] <= 128  # clipping would give 255
    assert loaded.getpixel((1, 0)) == WHITE


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_to_rgb_scales_other_sixteen_bit_modes(mode):
    image = Image.new(mode, (1, 1), 32896)  # 128 * 257
    assert to_rgb(image).getpixel((0, 0)) == (128, 128, 128)


def test_palette_with_transparency_becomes_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0] + list(RED) + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    loaded = load_page(_save(tmp_path / "palette.png", image, transparency=0))
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((1, 0)) == RED


def test_rgba_composited_over_white(tmp_path):
    image = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (0, 0, 0, 255))
    image.putpixel((2, 0), (0, 0, 0, 128))
    loaded = load_page(_save(tmp_path / "alpha.png", image))
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((1, 0)) == (0, 0, 0)
    assert _close(loaded.getpixel((2, 0)), (127, 127, 127), tolerance=1)


def test_la_composited_over_white():
    assert to_rgb(Image.new("LA", (1, 1), (0, 0))).getpixel((0, 0)) == WHITE


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(tmp_path / "phone.jpg", Image.new("RGB", (40, 20), WHITE), "JPEG", exif=exif)
    assert load_page(path).size == (20, 40)


def test_pdf_page_two_of_two(tmp_path):
    path = _two_page_pdf(tmp_path / "doc.pdf")
    image = load_page(path, page=2, dpi=144)
    assert image.mode == "RGB"
    assert image.size == (200, 100)  # 100x50 pt at 2 px/pt
    assert _close(image.getpixel((100, 50)), BLUE)
    assert _close(load_page(path, page=1, dpi=72).getpixel((50, 25)), RED)


def test_pdf_detected_by_magic_bytes_not_extension(tmp_path):
    path = _two_page_pdf(tmp_path / "doc.pdf")
    renamed = tmp_path / "scan.png"
    path.rename(renamed)
    assert _close(load_page(renamed, dpi=72).getpixel((50, 25)), RED)


def test_pdf_page_out_of_range(tmp_path):
    path = _two_page_pdf(tmp_path / "doc.pdf")
    with pytest.raises(ImageLoadError, match=r"doc\.pdf: page 3 requested but the PDF has 2 pages"):
        load_page(path, page=3)


def test_page_zero_rejected(tmp_path):
    path = _two_page_pdf(tmp_path / "doc.pdf")
    with pytest.raises(ImageLoadError, match="1-based"):
        load_page(path, page=0)


def test_corrupt_pdf(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\nthis is not really a pdf\n")
    with pytest.raises(ImageLoadError, match=r"broken\.pdf: PDF is corrupt"):
        load_page(path)


def test_encrypted_pdf(tmp_path):
    path = tmp_path / "locked.pdf"
    path.write_bytes(_encrypted_pdf_bytes())
    with pytest.raises(ImageLoadError, match=r"locked\.pdf: PDF is encrypted or password-protected"):
        load_page(path)


def test_truncated_png(tmp_path):
    data = _noise_png_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png: image data is truncated or corrupt"):
        load_page(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.png: file is empty \(0 bytes\)"):
        load_page(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match=r"nope\.png: file not found"):
        load_page(tmp_path / "nope.png")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("just some text\n")
    with pytest.raises(ImageLoadError, match=r"notes\.png: not a recognised image format"):
        load_page(path)


@pytest.mark.parametrize("side", [12, 20])  # 144 px: Pillow warns; 400 px: Pillow errors
def test_decompression_bomb(tmp_path, monkeypatch, side):
    path = _save(tmp_path / "bomb.png", Image.new("RGB", (side, side), WHITE))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageLoadError, match=r"bomb\.png: image is too large to load safely"):
        load_page(path)


def test_pdf_render_respects_pixel_limit(tmp_path, monkeypatch):
    path = _two_page_pdf(tmp_path / "doc.pdf")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match=r"doc\.pdf: image is too large.*lower the dpi"):
        load_page(path, dpi=72)


def test_decode_image_bytes_png_and_pdf(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGBA", (5, 5), (0, 0, 0, 0)).save(buffer, "PNG")
    assert decode_image_bytes(buffer.getvalue(), "row-1").getpixel((2, 2)) == WHITE
    pdf_bytes = _two_page_pdf(tmp_path / "doc.pdf").read_bytes()
    assert _close(decode_image_bytes(pdf_bytes, "row-2").getpixel((10, 10)), RED)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"row-7: image data is empty"),
        (b"hello", r"row-7: not a recognised image format"),
        (_noise_png_bytes()[:500], r"row-7: image data is truncated or corrupt"),
    ],
)
def test_decode_image_bytes_errors(data, message):
    with pytest.raises(ImageLoadError, match=message):
        decode_image_bytes(data, "row-7")
