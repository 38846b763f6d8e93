"""serve.files without a server: real files of each format built with the libraries that read them, their text
taken out, "translated" through the server's real request path (serve.translation.plan and assemble, with each
sentence upper-cased instead of searched) and written back; the structure must stay. And the hostile files."""

from __future__ import annotations

import io
import os
import time
import zipfile
from datetime import timedelta

import pytest

from serve import files
from serve.files import FileError, extract
from serve.translation import Options, assemble, plan

PARAGRAPHS = ["Ein Mann fährt Fahrrad. Zwei Hunde spielen.", "Eine Frau liest ein Buch."]


def fake_translate(texts: list[str], html: bool) -> list[str]:
    """The server's path from texts to translations, each sentence upper-cased (no model)."""
    request = plan(texts, "de-en", "de", Options(1), 400, html)
    return [r.text for r in assemble(request, [[(s.upper(), 0.0)] for s in request.work.sentences])]


def roundtrip(name: str, data: bytes) -> bytes:
    found = extract(name, data)
    assert found.texts, name
    return found.rebuild(fake_translate(found.texts, found.html))


# ----- files of each format --------------------------------------------------------------------------------------


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Ein Titel", level=1)
    paragraph = document.add_paragraph("Ein ")
    paragraph.add_run("Mann").bold = True
    paragraph.add_run(" fährt Fahrrad. Zwei Hunde spielen.")
    document.add_paragraph(PARAGRAPHS[1])
    table = document.add_table(rows=2, cols=2)
    for i, cell in enumerate(table._cells):
        cell.text = f"Zelle {i} hat Text."
    document.sections[0].header.paragraphs[0].text = "Eine Kopfzeile."
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pptx() -> bytes:
    import pptx
    from pptx.util import Inches

    presentation = pptx.Presentation()
    for text in PARAGRAPHS:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = "Ein Titel"
        slide.placeholders[1].text = text
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(4), Inches(4), Inches(1)).table
    table.cell(0, 0).text = "Ein Hund."
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def make_odt() -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.style import Style, TextProperties
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import H, P, Span

    document = OpenDocumentText()
    bold = Style(name="Bold", family="text")
    bold.addElement(TextProperties(fontweight="bold"))
    document.automaticstyles.addElement(bold)
    document.text.addElement(H(outlinelevel=1, text="Ein Titel"))
    paragraph = P(text="Ein ")
    paragraph.addElement(Span(stylename=bold, text="Mann"))
    paragraph.addText(" fährt Fahrrad. Zwei Hunde spielen.")
    document.text.addElement(paragraph)
    document.text.addElement(P(text=PARAGRAPHS[1]))
    table = Table(name="T")
    table.addElement(TableColumn(numbercolumnsrepeated=2))
    row = TableRow()
    for text in ("Ein Hund.", "Eine Katze."):
        cell = TableCell()
        cell.addElement(P(text=text))
        row.addElement(cell)
    table.addElement(row)
    document.text.addElement(table)
    out = io.BytesIO()
    document.write(out)
    return out.getvalue()


def make_odp() -> bytes:
    from odf.draw import Frame, Page, TextBox
    from odf.opendocument import OpenDocumentPresentation
    from odf.style import MasterPage, PageLayout, PageLayoutProperties
    from odf.text import P

    document = OpenDocumentPresentation()
    layout = PageLayout(name="PL")
    layout.addElement(PageLayoutProperties(pagewidth="28cm", pageheight="21cm", printorientation="landscape"))
    document.automaticstyles.addElement(layout)
    master = MasterPage(name="M", pagelayoutname=layout)
    document.masterstyles.addElement(master)
    for text in PARAGRAPHS:
        page = Page(masterpagename=master)
        document.presentation.addElement(page)
        frame = Frame(width="20cm", height="5cm", x="1cm", y="1cm")
        page.addElement(frame)
        box = TextBox()
        frame.addElement(box)
        box.addElement(P(text=text))
    out = io.BytesIO()
    document.write(out)
    return out.getvalue()


XHTML = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Ein Titel</title></head>
<body><h1>Kapitel eins</h1><p>Ein <b>Mann</b> fährt Fahrrad.<br/>Zwei Hunde spielen.</p>
<p>Eine Frau liest ein Buch.</p><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"/></body></html>"""


def make_epub(chapter: str = XHTML) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as book:
        book.writestr("mimetype", files.EPUB_TYPE, compress_type=zipfile.ZIP_STORED)
        book.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
            compress_type=zipfile.ZIP_DEFLATED,
        )
        book.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0"><manifest>'
            '<item id="c1" href="chapter.xhtml" media-type="application/xhtml+xml"/></manifest>'
            '<spine><itemref idref="c1"/></spine></package>',
            compress_type=zipfile.ZIP_DEFLATED,
        )
        book.writestr("OEBPS/chapter.xhtml", chapter, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def make_srt() -> bytes:
    import srt

    subtitles = [
        srt.Subtitle(1, timedelta(seconds=1), timedelta(seconds=2, milliseconds=500), "Ein Mann fährt Fahrrad."),
        srt.Subtitle(2, timedelta(seconds=3), timedelta(seconds=5), "Zwei Hunde\nspielen im Schnee."),
    ]
    return srt.compose(subtitles).encode("utf-8")


def test_txt_keeps_the_lines():
    text = "Ein Mann fährt Fahrrad.\n\nZwei Hunde spielen.\r\nEin Kind lacht.\n"
    out = roundtrip("a.txt", text.encode("utf-8")).decode("utf-8")
    assert out == text.upper().replace("\r\n", "\r\n")


def test_html_keeps_the_markup():
    page = "<!DOCTYPE html><html><head><title>Ein Titel</title><style>p {color: red}</style></head><body>"
    page += "<p>Ein <b>Mann</b> fährt Fahrrad.</p><script>var x = 1;</script></body></html>"
    out = roundtrip("page.html", page.encode("utf-8")).decode("utf-8")
    assert out.startswith("<!DOCTYPE html>\n<html><head><title>EIN TITEL</title><style>p {color: red}</style>")
    assert "<b>" in out and "<script>var x = 1;</script>" in out and "FAHRRAD" in out


def test_srt_keeps_numbers_and_timings():
    import srt

    out = list(srt.parse(roundtrip("a.srt", make_srt()).decode("utf-8")))
    source = list(srt.parse(make_srt().decode("utf-8")))
    assert [(s.index, s.start, s.end) for s in out] == [(s.index, s.start, s.end) for s in source]
    assert [s.content for s in out] == ["EIN MANN FÄHRT FAHRRAD.", "ZWEI HUNDE\nSPIELEN IM SCHNEE."]


def test_docx_keeps_paragraphs_runs_and_tables():
    import docx

    source = docx.Document(io.BytesIO(make_docx()))
    out = docx.Document(io.BytesIO(roundtrip("a.docx", make_docx())))
    assert len(out.paragraphs) == len(source.paragraphs) and len(out.tables) == 1
    assert [p.text for p in out.paragraphs] == [p.text.upper() for p in source.paragraphs]
    runs = out.paragraphs[1].runs
    assert (
        len(runs) == 3
        and runs[1].bold
        and "".join(r.text for r in runs) == "EIN MANN FÄHRT FAHRRAD. ZWEI HUNDE SPIELEN."
    )
    assert [c.text for c in out.tables[0]._cells] == [f"ZELLE {i} HAT TEXT." for i in range(4)]
    assert out.sections[0].header.paragraphs[0].text == "EINE KOPFZEILE."
    assert out.paragraphs[0].style.name == "Heading 1"


def test_pptx_keeps_slides_and_tables():
    import pptx

    out = pptx.Presentation(io.BytesIO(roundtrip("a.pptx", make_pptx())))
    slides = list(out.slides)
    assert len(slides) == 2
    assert [s.shapes.title.text for s in slides] == ["EIN TITEL", "EIN TITEL"]
    assert [s.placeholders[1].text for s in slides] == [p.upper() for p in PARAGRAPHS]
    tables = [shape.table for shape in slides[1].shapes if shape.has_table]
    assert tables[0].cell(0, 0).text == "EIN HUND."


def test_odt_keeps_headings_spans_and_tables():
    from odf import teletype
    from odf.opendocument import load
    from odf.table import Table
    from odf.text import H, P, Span

    out = load(io.BytesIO(roundtrip("a.odt", make_odt())))
    assert [teletype.extractText(h) for h in out.getElementsByType(H)] == ["EIN TITEL"]
    texts = [teletype.extractText(p) for p in out.getElementsByType(P)]
    assert texts == [
        "EIN MANN FÄHRT FAHRRAD. ZWEI HUNDE SPIELEN.",
        "EINE FRAU LIEST EIN BUCH.",
        "EIN HUND.",
        "EINE KATZE.",
    ]
    assert [teletype.extractText(s) for s in out.getElementsByType(Span)] == ["MANN"]
    assert len(out.getElementsByType(Table)) == 1


def test_odp_keeps_its_pages():
    from odf import teletype
    from odf.draw import Page
    from odf.opendocument import load
    from odf.text import P

    out = load(io.BytesIO(roundtrip("a.odp", make_odp())))
    assert len(out.getElementsByType(Page)) == 2
    assert [teletype.extractText(p) for p in out.getElementsByType(P)] == [p.upper() for p in PARAGRAPHS]


def test_epub_keeps_entries_and_markup():
    source = zipfile.ZipFile(io.BytesIO(make_epub()))
    out = zipfile.ZipFile(io.BytesIO(roundtrip("book.epub", make_epub())))
    assert out.namelist() == source.namelist() and out.infolist()[0].compress_type == zipfile.ZIP_STORED
    assert out.read("mimetype") == source.read("mimetype") and out.read("OEBPS/content.opf") == source.read(
        "OEBPS/content.opf"
    )
    chapter = out.read("OEBPS/chapter.xhtml").decode("utf-8")
    assert "<title>EIN TITEL</title>" in chapter and "<h1>KAPITEL EINS</h1>" in chapter
    assert "<b>MANN</b>" in chapter and "<br/>" in chapter and 'viewBox="0 0 1 1"' in chapter
    assert "EINE FRAU LIEST EIN BUCH." in chapter


def test_characters_count_the_text_not_the_markup():
    found = extract("a.docx", make_docx())
    assert found.characters == sum(len(t) for t in found.plain) and "<span>" not in "".join(found.plain)
    assert "Ein Mann fährt Fahrrad. Zwei Hunde spielen." in found.plain


# ----- hostile files ---------------------------------------------------------------------------------------------


def _rezip(data: bytes, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, replace.get(info.filename, source.read(info)))
        for name, content in (add or {}).items():
            archive.writestr(name, content)
    return out.getvalue()


XXE = (
    b'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r>'
    b"<w:t>&xxe;</w:t></w:r></w:p></w:body></w:document>"
)
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>'
    b'<html xmlns="http://www.w3.org/1999/xhtml"><body><p>&lol2;</p></body></html>'
)


def zip_bomb(data: bytes, size: int) -> bytes:
    return _rezip(data, {}, {"word/media/bomb.bin": b"\0" * size})


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a.docx", lambda: zip_bomb(make_docx(), files.MAX_UNPACKED + 1), "over the limit"),
        ("a.docx", lambda: zip_bomb(make_docx(), 4 << 20), "compression ratio"),
        (
            "a.docx",
            lambda: _rezip(
                make_docx(), {}, {"word/big.xml": b"<a>" + os.urandom(files.MAX_MARKUP // 2).hex().encode() + b"</a>"}
            ),
            "bytes of XML",
        ),
        ("a.html", lambda: b"<p>" + b" " * files.MAX_MARKUP + b"</p>", "over the limit"),
        ("a.epub", lambda: make_epub("<html><p>" + "<b/>" * files.MAX_ELEMENTS + "</p></html>"), "XML elements"),
        ("a.html", lambda: b"<b>" * (files.MAX_ELEMENTS + 1), "tags"),
        ("a.docx", lambda: _rezip(make_docx(), {"word/document.xml": XXE}), "DTD or entity"),
        ("a.epub", lambda: make_epub(LAUGHS.decode()), "DTD or entity"),
        ("a.odt", lambda: _rezip(make_odt(), {"content.xml": XXE}), "DTD or entity"),
        ("a.docx", lambda: _rezip(make_docx(), {"word/document.xml": b"<w:document"}), "malformed XML"),
        ("a.odt", lambda: _rezip(make_odt(), {"styles.xml": b"<a>" * 300 + b"</a>" * 300}), "nested deeper"),
        ("a.epub", lambda: make_epub("<html>" + "<div>" * 300 + "</div>" * 300 + "</html>"), "nested deeper"),
        ("a.docx", lambda: "Ein Mann fährt Fahrrad.".encode(), "not a zip"),
        ("a.odt", make_docx, "mimetype"),
        ("a.pptx", make_docx, "no ppt/presentation.xml"),
        ("a.docx", make_pptx, "no word/document.xml"),
        ("a.epub", make_odt, "mimetype"),
        ("a.odt", make_odp, "mimetype"),
        ("a.txt", make_docx, "binary"),
        ("a.srt", lambda: "Ein Mann\xff".encode("latin-1"), "UTF-8"),
        ("a.html", lambda: b"<p>\0</p>", "binary"),
        ("a.srt", lambda: b"no subtitles here\n\n1\nnot a timing\n", "SubRip"),
        ("a.pdf", lambda: b"%PDF-1.4", "not supported"),
        ("noextension", lambda: b"text", "not supported"),
        ("a.docx", lambda: make_docx()[:2000], "damaged"),
    ],
)
def test_hostile_files_are_file_errors(name, data, message):
    with pytest.raises(FileError, match=message):
        extract(name, data())


def test_an_entry_larger_than_its_directory_says_is_refused():
    """A directory that understates an entry's size: zipfile stops at the declared size and the CRC fails."""
    data = bytearray(_rezip(make_docx(), {}, {"word/media/x.bin": b"\0" * 100_000}))
    entry = data.rfind(b"word/media/x.bin")  # the central directory's record: its uncompressed size is 22 bytes back
    data[entry - 46 + 24 : entry - 46 + 28] = (10).to_bytes(4, "little")
    with pytest.raises(FileError):
        extract("a.docx", bytes(data))


@pytest.mark.parametrize("name", ["a.txt", "a.html", "a.srt"])
def test_empty_text_files_have_nothing_to_translate(name):
    assert extract(name, b"").texts == [] and extract(name, b"  \n").texts == []


def test_secure_filename():
    assert files.secure_filename("../../etc/passwd") == "etc_passwd"
    assert files.secure_filename("Übersicht 2024.docx") == "Ubersicht_2024.docx"
    assert files.secure_filename("..docx") == "docx"
    assert files.secure_filename("日本.txt") == "txt"
    long = files.secure_filename("a" * 300 + ".docx")
    assert len(long) == files.MAX_NAME and long.endswith("a.docx")
    assert files.extension("a/b.DOCX") == ".docx" and files.extension(".bashrc") == ""


def test_characters_xml_cannot_hold_are_dropped_from_translations():
    import docx

    found = extract("a.docx", make_docx())
    out = docx.Document(io.BytesIO(found.rebuild([t.replace("</span>", "\x0b\x01</span>") for t in found.texts])))
    assert out.paragraphs[0].text == "Ein Titel"


def test_the_store_keeps_files_for_their_time_to_live(tmp_path):
    from serve.filestore import FileStore

    store = FileStore(str(tmp_path / "out"), ttl=60)
    name = store.save("../../Bericht über.docx", b"data")
    assert name.endswith(".Bericht_uber.docx") and store.read(name) == b"data"
    assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o600
    for bad in ("../out/" + name, name + "/", "x" + name, name.split(".", 1)[1], ".", ".."):
        assert store.read(bad) is None
    assert store.sweep(now=time.time() + 30) == 0 and store.read(name) == b"data"
    assert store.sweep(now=time.time() + 61) == 1 and store.read(name) is None
    os.utime(tmp_path / "out" / store.save("a.txt", b"x"), (0, 0))  # written long ago
    assert os.listdir(tmp_path / "out") != [] and store.read("unknown") is None
    assert os.listdir(tmp_path / "out") == []  # every read sweeps


def test_the_default_store_is_private_and_removed_at_exit():
    from serve.filestore import FileStore

    store = FileStore(ttl=60)
    assert store.directory.stat().st_mode & 0o777 == 0o700
    store.save("a.txt", b"x")
    store._remove(os.getpid() + 1)  # what a forked HTTP process would do: nothing
    assert store.directory.is_dir()
    store._remove(os.getpid())
    assert not store.directory.exists()
