"""POST /translate_file and GET /download_file against a real `nmt serve` (tiny de-en, en-de and en-fr models, a
keys file): a file of each format built with the library that reads it comes back translated, its structure kept,
each text as /translate translates it; German to French through English; the hostile files are 400 (or 413), never
5xx; expiry; a key's characters per day count a file's characters."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
import requests
from server_process import ServerProcess, raw_request
from test_file_formats import XXE, make_docx, make_epub, make_odp, make_odt, make_pptx, make_srt, zip_bomb

pytestmark = pytest.mark.slow  # a running `nmt serve` with three tiny models

KEY, LIMITED, DAILY = "files-K3y", "files-limited", 300
MAX_CHARS, MAX_FILE_BYTES, TTL = 2000, 300_000, 60


@pytest.fixture(scope="module")
def server(tiny_run, tiny_run_en_de, tiny_run_en_fr, tmp_path_factory):
    directory = tmp_path_factory.mktemp("files")
    runs = directory / "runs"
    runs.mkdir()
    for name, run in (("de_en", tiny_run), ("en_de", tiny_run_en_de), ("en_fr", tiny_run_en_fr)):
        (runs / name).symlink_to(run, target_is_directory=True)
    (directory / "keys").write_text(f"{KEY}\n{LIMITED} characters_per_day={DAILY}\n", encoding="utf-8")
    options = ["--threads", "1", "--batch-timeout", "0.01", "--keys", str(directory / "keys"),
               "--files-dir", str(directory / "out"), "--file-ttl", str(TTL), "--max-chars", str(MAX_CHARS),
               "--max-file-bytes", str(MAX_FILE_BYTES)]  # fmt: skip
    proc = ServerProcess.ready(runs, directory / "server.log", *options, headers={"X-API-Key": KEY})
    proc.files_dir = directory / "out"
    try:
        yield proc
    finally:
        proc.stop()


def upload(server: ServerProcess, name: str, data: bytes, source="de", target="en", key=KEY) -> requests.Response:
    form = {"source": source, "target": target} | ({"api_key": key} if key is not None else {})
    return requests.post(f"{server.url}/translate_file", files={"file": (name, data)}, data=form, timeout=60)


def translated_file(server: ServerProcess, name: str, data: bytes, **kwargs) -> bytes:
    answer = upload(server, name, data, **kwargs)
    assert answer.status_code == 200, answer.text
    url = answer.json()["translatedFileUrl"]
    assert url.startswith(f"{server.url}/download_file/") and url.endswith("." + name)
    download = requests.get(url, timeout=10)
    assert download.status_code == 200, download.text
    assert download.headers["content-disposition"] == f'attachment; filename="{name}"'
    return download.content


def lt(server: ServerProcess, q, source="de", target="en", fmt="text") -> list[str] | str:
    body = {"q": q, "source": source, "target": target, "format": fmt, "api_key": KEY}
    answer = requests.post(f"{server.url}/translate", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["translatedText"]


def words(text: str) -> str:
    return " ".join(text.split())


def test_frontend_settings_advertise_files(server):
    settings = server.get("/frontend/settings").json()
    assert settings["filesTranslation"] is True
    assert {".txt", ".html", ".docx", ".odt", ".pptx", ".epub", ".srt"} <= set(settings["supportedFilesFormat"])


def test_txt(server):
    text = "Ein Mann fährt Fahrrad. Zwei Hunde spielen im Schnee.\n\nEin Kind lacht.\n"
    out = translated_file(server, "notes.txt", text.encode("utf-8")).decode("utf-8")
    assert out == lt(server, text)  # LibreTranslate's form path drops a trailing newline; JSON keeps it


def test_html(server):
    page = "<html><head><title>Ein Titel</title></head><body><p>Ein <b>Mann</b> fährt Fahrrad.</p></body></html>"
    out = translated_file(server, "page.html", page.encode("utf-8")).decode("utf-8")
    assert out == lt(server, page, fmt="html") and "<b>" in out and out.startswith("<html><head><title>")


def test_srt(server):
    import srt

    source = list(srt.parse(make_srt().decode("utf-8")))
    out = list(srt.parse(translated_file(server, "film.srt", make_srt()).decode("utf-8")))
    assert [(s.index, s.start, s.end) for s in out] == [(s.index, s.start, s.end) for s in source]
    assert [s.content for s in out] == lt(server, [s.content for s in source])


def test_docx(server):
    import docx

    source = docx.Document(io.BytesIO(make_docx()))
    out = docx.Document(io.BytesIO(translated_file(server, "report.docx", make_docx())))
    assert len(out.paragraphs) == len(source.paragraphs) and len(out.tables) == len(source.tables) == 1
    expected = lt(server, [p.text for p in source.paragraphs])
    assert [words(p.text) for p in out.paragraphs] == [words(t) for t in expected]
    assert len(out.paragraphs[1].runs) == 3 and out.paragraphs[1].runs[1].bold
    cells = lt(server, [c.text for c in source.tables[0]._cells])
    assert [words(c.text) for c in out.tables[0]._cells] == [words(t) for t in cells]


def test_pptx(server):
    import pptx

    source = list(pptx.Presentation(io.BytesIO(make_pptx())).slides)
    out = list(pptx.Presentation(io.BytesIO(translated_file(server, "talk.pptx", make_pptx()))).slides)
    assert len(out) == len(source) == 2
    expected = lt(server, [s.placeholders[1].text for s in source])
    assert [words(s.placeholders[1].text) for s in out] == [words(t) for t in expected]
    assert sum(shape.has_table for shape in out[1].shapes) == 1


def test_odt(server):
    from odf import teletype
    from odf.opendocument import load
    from odf.table import Table
    from odf.text import P, Span

    source = load(io.BytesIO(make_odt()))
    out = load(io.BytesIO(translated_file(server, "letter.odt", make_odt())))
    paragraphs = [teletype.extractText(p) for p in source.getElementsByType(P)]
    expected = lt(server, paragraphs)
    assert [words(teletype.extractText(p)) for p in out.getElementsByType(P)] == [words(t) for t in expected]
    assert len(out.getElementsByType(Span)) == 1 and len(out.getElementsByType(Table)) == 1


def test_odp(server):
    from odf import teletype
    from odf.draw import Page
    from odf.opendocument import load
    from odf.text import P

    source = load(io.BytesIO(make_odp()))
    out = load(io.BytesIO(translated_file(server, "slides.odp", make_odp())))
    expected = lt(server, [teletype.extractText(p) for p in source.getElementsByType(P)])
    assert [words(teletype.extractText(p)) for p in out.getElementsByType(P)] == [words(t) for t in expected]
    assert len(out.getElementsByType(Page)) == 2


def test_epub(server):
    out = zipfile.ZipFile(io.BytesIO(translated_file(server, "book.epub", make_epub())))
    source = zipfile.ZipFile(io.BytesIO(make_epub()))
    assert out.namelist() == source.namelist() and out.read("mimetype") == source.read("mimetype")
    chapter = out.read("OEBPS/chapter.xhtml").decode("utf-8")
    assert "<b>" in chapter and "<br/>" in chapter and "Fahrrad" not in chapter
    assert words(lt(server, "Eine Frau liest ein Buch.")) in chapter


def test_pivot_with_auto_detection(server):
    text = "Ein Mann fährt Fahrrad. Zwei Hunde spielen im Schnee."
    out = translated_file(server, "a.txt", text.encode("utf-8"), source="auto", target="fr").decode("utf-8")
    assert out == lt(server, text, source="de", target="fr")


def test_expired_files_are_deleted(server):
    answer = upload(server, "a.txt", b"Ein Kind lacht.")
    url = answer.json()["translatedFileUrl"]
    name = url.rsplit("/", 1)[1]
    stored = Path(server.files_dir) / name
    assert stored.is_file() and oct(stored.stat().st_mode & 0o777) == "0o600"
    past = time.time() - TTL - 1
    os.utime(stored, (past, past))
    gone = requests.get(url, timeout=10)
    assert (gone.status_code, "error" in gone.json()) == (404, True)
    assert not stored.exists()  # swept


@pytest.mark.parametrize(
    "name",
    ["nothing.txt", "..%2F..%2Fetc%2Fpasswd", "..", "%2Fetc%2Fpasswd", "00000000-0000-4000-8000-000000000000.a.txt",
     "..%2Fkeys", ".%2E%2F.%2E%2Fkeys"],
)  # fmt: skip
def test_unknown_names_are_404(server, name):
    status, _, body = raw_request(server.port, "GET", f"/download_file/{name}")  # no client tidies the path
    assert status == 404 and "error" in json.loads(body), body


def _bad_key_cases():
    return [(None, 400), ("wrong", 403)]


@pytest.mark.parametrize(("key", "status"), _bad_key_cases())
def test_the_key_is_checked(server, key, status):
    answer = upload(server, "a.txt", b"Ein Kind lacht.", key=key)
    assert answer.status_code == status and "error" in answer.json()


HOSTILE = {
    "zip bomb": ("a.docx", lambda: zip_bomb(make_docx(), 4 << 20), "compression ratio"),
    "XML external entity": (
        "a.docx",
        lambda: _replace(make_docx(), "word/document.xml", XXE),
        "DTD or entity",
    ),
    "docx that is text": ("a.docx", lambda: b"Ein Mann.", "not a zip"),
    "txt that is a zip": ("a.txt", make_docx, "binary"),
    "odt that is a docx": ("a.odt", make_docx, "mimetype"),
    "empty": ("a.txt", lambda: b"", "empty file"),
    "only spaces": ("a.txt", lambda: b"  \n ", "empty file"),
    "unsupported": ("a.exe", lambda: b"MZ", "file format not supported"),
    "too many characters": ("a.txt", lambda: ("Ein Kind lacht. " * 200).encode(), "exceeds text limit"),
}


def _replace(data: bytes, name: str, content: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, content if info.filename == name else source.read(info))
    return out.getvalue()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_are_400(server, case):
    name, data, message = HOSTILE[case]
    answer = upload(server, name, data())
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_a_file_over_the_size_limit_is_413(server):
    answer = upload(server, "a.txt", b"Ein Kind lacht. " * (MAX_FILE_BYTES // 16 + 1))
    assert answer.status_code == 413 and "error" in answer.json(), answer.text
    huge = upload(server, "a.txt", b"x" * (MAX_FILE_BYTES + 100_000))  # over the body limit: refused up front
    assert huge.status_code == 413 and "error" in huge.json(), huge.text


def test_missing_parameters(server):
    answer = requests.post(f"{server.url}/translate_file", data={"source": "de", "target": "en", "api_key": KEY})
    assert answer.status_code == 400 and answer.json()["error"] == "Invalid request: missing file parameter"
    answer = upload(server, "a.txt", b"Ein Kind lacht.", target="")
    assert answer.status_code == 400 and answer.json()["error"] == "Invalid request: missing target parameter"
    answer = upload(server, "a.txt", b"Ein Kind lacht.", target="xx")
    assert answer.status_code == 400 and answer.json()["error"] == "xx is not supported"


def test_a_files_characters_count_against_the_keys_day(server):
    larger = upload(server, "a.txt", ("Ein Kind lacht. " * (DAILY // 15 + 2)).encode(), key=LIMITED)
    assert larger.status_code == 413 and "error" in larger.json(), larger.text  # more than a whole day
    text = "Ein Mann fährt Fahrrad. Zwei Hunde spielen im Schnee."  # about 50 characters a time
    for _ in range(DAILY // len(text)):
        assert upload(server, "a.txt", text.encode(), key=LIMITED).status_code == 200
    over = upload(server, "a.txt", text.encode(), key=LIMITED)
    assert over.status_code == 429 and "error" in over.json() and "Retry-After" in over.headers, over.text
    assert upload(server, "a.txt", text.encode()).status_code == 200  # another key is not charged
