"""Files for POST /translate_file: LibreTranslate's formats, each read and written back by a maintained library.

`extract(filename, data)` checks the file (the extension decides the format; the bytes must be that format), takes
out its translatable text and returns an `Extracted`: the texts to translate (all of a file's texts go through the
server's document path in one call), and `rebuild`, which writes the translations back into the file, keeping its
structure and markup. One function per format:

- .txt: one document (line breaks and blank lines kept), UTF-8.
- .html/.htm: one HTML document through the HTML path (serve.html: inline markup kept), UTF-8.
- .srt (srt): each subtitle's text; numbers and timings kept.
- .docx (python-docx), .pptx (python-pptx), .odt/.odp (odfpy): each paragraph is a run of text pieces (the text of
  each formatted run: `w:t`, `a:t`, the text nodes of `text:p`/`text:h`); a paragraph goes to the HTML path as
  `<span>piece</span>...`, so that a sentence spanning bold and plain runs is translated as one sentence and its
  words are shared out over the runs; each piece's translation goes back into its run (formatting kept).
- .epub: the zip is copied entry by entry; each XHTML document's text runs (serve.html's runs, inline elements kept)
  are translated the same way, everything else is copied as it is.

Hostile files are a FileError (a 400): a zip whose directory declares more than MAX_UNPACKED bytes, more than
MAX_ENTRIES entries or a compression ratio over MAX_RATIO (checked before anything is extracted; Python's zipfile
never inflates an entry past its declared size), encrypted or damaged entries, XML with a DTD or entity
declarations (every XML part is parsed with defusedxml first: no entity is expanded, no URL fetched), an extension
that lies (zip formats must be a zip with the format's own parts, text formats valid UTF-8 without NUL bytes), and
anything a library cannot read.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree
from bs4 import BeautifulSoup, NavigableString
from defusedxml import DefusedXmlException

from serve.html import MarkupError, parse_html, text_runs

MAX_ENTRIES = 5000  # entries in an Office or EPUB zip
MAX_UNPACKED = 64 << 20  # bytes of all entries of a zip, uncompressed, as its directory declares them
MAX_RATIO = 100  # uncompressed / compressed size of a zip over 1 MiB (XML compresses about 10 to 30 times)
MAX_DEPTH = 200  # nested XML elements (the writers and serve.html walk the tree recursively)
MAX_ELEMENTS = 100_000  # elements (or HTML tags) in a file: seconds of parsing; a real document has far fewer
MAX_MARKUP = 8 << 20  # bytes of XML (all parts of a zip) or HTML in a file: parsing more would take seconds
ZIP_MAGIC = b"PK\x03\x04"
XML_SUFFIXES = (".xml", ".rels", ".xhtml", ".htm", ".html", ".opf", ".ncx", ".svg", ".smil")
XHTML_SUFFIXES = (".xhtml", ".htm", ".html")
ODF_TYPES = {
    ".odt": "application/vnd.oasis.opendocument.text",
    ".odp": "application/vnd.oasis.opendocument.presentation",
}
EPUB_TYPE = "application/epub+zip"
MAX_NAME = 200  # characters of a safe file name


class FileError(ValueError):
    """A file that cannot be translated: not the format its extension says, hostile, or unreadable (a 400)."""


@dataclass
class Extracted:
    """A file's translatable text: `texts` (HTML fragments when `html`) for Service.translate_route, `plain` the
    same texts without markup (what counts as characters, and what language detection reads), and `rebuild`,
    which takes one translation per text and returns the translated file."""

    texts: list[str]
    plain: list[str]
    html: bool
    rebuild: Callable[[list[str]], bytes]

    @property
    def characters(self) -> int:
        return sum(len(text) for text in self.plain)


# ----- checks shared by the formats ------------------------------------------------------------------------------


def _text(data: bytes, kind: str) -> tuple[str, bool]:
    """The file as UTF-8 text (and whether it had a byte order mark); FileError for binary or other encodings."""
    if data.startswith(ZIP_MAGIC) or b"\x00" in data:
        raise FileError(f"the file is not a {kind} file (binary content)")
    try:
        return data.decode("utf-8-sig"), data.startswith(b"\xef\xbb\xbf")
    except UnicodeDecodeError:
        raise FileError(f"the file is not a {kind} file in UTF-8") from None


def open_zip(data: bytes, kind: str) -> zipfile.ZipFile:
    """The file as a zip, its directory checked before anything is extracted (a zip bomb is a FileError), and every
    entry read once to check it (bounded by the declared sizes)."""
    if not data.startswith(ZIP_MAGIC):
        raise FileError(f"the file is not a {kind} file (not a zip archive)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        raise FileError(f"the file is not a {kind} file (a damaged zip archive)") from None
    if len(infos) > MAX_ENTRIES:
        raise FileError(f"the archive has {len(infos)} entries, over the limit of {MAX_ENTRIES}")
    unpacked = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos)
    if unpacked > MAX_UNPACKED:
        raise FileError(f"the archive unpacks to {unpacked} bytes, over the limit of {MAX_UNPACKED} (a zip bomb?)")
    if unpacked > 1 << 20 and unpacked > MAX_RATIO * max(packed, 1):
        raise FileError(f"the archive's compression ratio is over {MAX_RATIO} (a zip bomb?)")
    for info in infos:
        if info.flag_bits & 0x1:
            raise FileError("the archive has encrypted entries")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FileError("the archive uses a compression method other than deflate")
    try:
        if archive.testzip() is not None:
            raise FileError(f"the file is not a {kind} file (a damaged zip archive)")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError, RuntimeError):
        raise FileError(f"the file is not a {kind} file (a damaged zip archive)") from None
    return archive


def check_xml(archive: zipfile.ZipFile, allow_doctype: bool = False) -> None:
    """Every XML part parses with defusedxml: no entity declaration, no external reference, and no DTD at all
    unless `allow_doctype` (XHTML in an EPUB may name its DTD; it is never loaded)."""
    parts = [i for i in archive.infolist() if i.filename.lower().endswith(XML_SUFFIXES) and not i.is_dir()]
    markup = sum(info.file_size for info in parts)
    if markup > MAX_MARKUP:
        raise FileError(f"the archive holds {markup} bytes of XML, over the limit of {MAX_MARKUP}")
    elements = 0
    for info in parts:
        try:
            root = defusedxml.ElementTree.fromstring(
                archive.read(info), forbid_dtd=not allow_doctype, forbid_entities=True, forbid_external=True
            )
        except DefusedXmlException:
            raise FileError(f"{_shown(info.filename)}: XML with a DTD or entity declarations is refused") from None
        except (ParseError, ValueError, zipfile.BadZipFile, OSError):
            raise FileError(f"{_shown(info.filename)}: malformed XML") from None
        depth, count = _shape(root)
        if depth > MAX_DEPTH:
            raise FileError(f"{_shown(info.filename)}: XML nested deeper than {MAX_DEPTH} elements")
        elements += count
        if elements > MAX_ELEMENTS:
            raise FileError(f"the file has more than {MAX_ELEMENTS} XML elements")


def _shape(root: Any) -> tuple[int, int]:
    """How deeply the elements under `root` nest, and how many there are (without recursion)."""
    deepest, count, stack = 0, 0, [(root, 1)]
    while stack:
        element, depth = stack.pop()
        deepest, count = max(deepest, depth), count + 1
        if deepest > MAX_DEPTH or count > MAX_ELEMENTS:
            break
        stack += [(child, depth + 1) for child in element]
    return deepest, count


def _shown(name: str) -> str:
    return repr(name[:80])


def _member(archive: zipfile.ZipFile, name: str) -> bytes | None:
    try:
        return archive.read(name)
    except KeyError:
        return None


# ----- paragraphs of pieces: the Office formats and EPUB ---------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fragment(pieces: list[str]) -> str:
    """A paragraph's pieces as one HTML fragment: the HTML path translates it as one run and shares the words of
    each sentence over the spans (serve.html)."""
    return "".join(f"<span>{_escape(piece)}</span>" for piece in pieces)


def pieces(translated: str, count: int) -> list[str]:
    """The text of each span of a translated fragment (the inverse of `fragment`)."""
    spans = BeautifulSoup(translated, "html.parser").find_all("span", recursive=False)
    if len(spans) != count:
        raise FileError(f"a translated paragraph has {len(spans)} pieces instead of {count}")
    return [span.get_text() for span in spans]


NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 cannot hold


def _paragraphs(
    runs: list[list[Any]], get: Callable[[Any], str], put: Callable[[Any, str], None], save: Callable[[], bytes]
) -> Extracted:
    """An Extracted for paragraphs made of pieces (`get` reads a piece's text, `put` writes it, `save` the file)."""
    runs = [run for run in runs if "".join(get(node) for node in run).strip()]

    def rebuild(translations: list[str]) -> bytes:
        for run, translated in zip(runs, translations, strict=True):
            for node, text in zip(run, pieces(translated, len(run)), strict=True):
                put(node, NOT_XML.sub("", text))
        return save()

    plain = ["".join(get(node) for node in run) for run in runs]
    return Extracted([fragment([get(node) for node in run]) for run in runs], plain, True, rebuild)


def _by_paragraph(root: Any, paragraph: str, text: str) -> list[list[Any]]:
    """The `text` elements under `root` (lxml), grouped by their nearest `paragraph` ancestor, in document order."""
    groups: dict[Any, list[Any]] = {}  # keyed by the element itself: lxml keeps one proxy per node while it lives
    for element in root.iter(text):
        parent = element.getparent()
        while parent is not None and parent.tag != paragraph:
            parent = parent.getparent()
        groups.setdefault(parent, []).append(element)
    return list(groups.values())


def _set_text(element: Any, text: str) -> None:
    element.text = text


# ----- one function per format -----------------------------------------------------------------------------------


def txt_file(data: bytes) -> Extracted:
    """A plain text file: one document."""
    text, bom = _text(data, ".txt")
    texts = [text] if text.strip() else []
    prefix = b"\xef\xbb\xbf" if bom else b""
    return Extracted(texts, texts, False, lambda out: prefix + (out[0] if out else text).encode("utf-8"))


def html_file(data: bytes) -> Extracted:
    """An HTML document (or fragment): one text through the HTML path."""
    if len(data) > MAX_MARKUP:
        raise FileError(f"the HTML file has {len(data)} bytes, over the limit of {MAX_MARKUP}")
    text, bom = _text(data, ".html")
    if text.count("<") > MAX_ELEMENTS:
        raise FileError(f"the HTML file has more than {MAX_ELEMENTS} tags")
    try:
        plain = parse_html(text).texts
    except MarkupError as e:
        raise FileError(str(e)) from None
    texts = [text] if plain else []
    prefix = b"\xef\xbb\xbf" if bom else b""
    return Extracted(
        texts, ["".join(plain)] if plain else [], True, lambda out: prefix + (out[0] if out else text).encode("utf-8")
    )


def srt_file(data: bytes) -> Extracted:
    """SubRip subtitles: each subtitle's text; numbers and timings as they were."""
    import srt

    text, bom = _text(data, ".srt")
    try:
        subtitles = list(srt.parse(text))
    except (srt.SRTParseError, ValueError, OverflowError) as e:
        raise FileError(f"not a SubRip file: {str(e)[:120]}") from None
    used = [i for i, subtitle in enumerate(subtitles) if subtitle.content.strip()]
    texts = [subtitles[i].content for i in used]
    eol = "\r\n" if "\r\n" in text else "\n"

    def rebuild(translations: list[str]) -> bytes:
        for i, translated in zip(used, translations, strict=True):
            subtitles[i].content = translated
        out = srt.compose(subtitles, reindex=False, strict=False, eol=eol)
        return (b"\xef\xbb\xbf" if bom else b"") + out.encode("utf-8")

    return Extracted(texts, texts, False, rebuild)


def docx_file(data: bytes) -> Extracted:
    """A Word document: the paragraphs of the body (tables and text boxes included), headers, footers and notes."""
    import docx
    from docx.oxml.ns import qn

    archive = open_zip(data, ".docx")
    if _member(archive, "[Content_Types].xml") is None or "word/document.xml" not in archive.namelist():
        raise FileError("the file is not a .docx file (no word/document.xml)")
    check_xml(archive)
    try:
        document = docx.Document(io.BytesIO(data))
        parts = [part for part in document.part.package.iter_parts() if hasattr(part, "_element")]
    except Exception as e:  # a library's reaction to a hostile file is not known in advance: always a 400
        raise FileError(f"cannot read the .docx file ({e.__class__.__name__})") from None
    wanted = re.compile(r"^/word/(document|header\d*|footer\d*|footnotes|endnotes)\.xml$")
    runs = []
    for part in sorted(parts, key=lambda p: str(p.partname) != "/word/document.xml"):
        if wanted.match(str(part.partname)):
            runs += _by_paragraph(part._element, qn("w:p"), qn("w:t"))

    def put(element: Any, text: str) -> None:
        element.text = text
        element.set(qn("xml:space"), "preserve")

    def save() -> bytes:
        out = io.BytesIO()
        document.save(out)
        return out.getvalue()

    return _paragraphs(runs, lambda e: e.text or "", put, save)


def pptx_file(data: bytes) -> Extracted:
    """A PowerPoint presentation: the paragraphs of every slide's shapes and tables, slide by slide."""
    import pptx
    from pptx.oxml.ns import qn

    archive = open_zip(data, ".pptx")
    if "ppt/presentation.xml" not in archive.namelist():
        raise FileError("the file is not a .pptx file (no ppt/presentation.xml)")
    check_xml(archive)
    try:
        presentation = pptx.Presentation(io.BytesIO(data))
        slides = list(presentation.slides)
    except Exception as e:  # a library's reaction to a hostile file is not known in advance: always a 400
        raise FileError(f"cannot read the .pptx file ({e.__class__.__name__})") from None
    runs = [run for slide in slides for run in _by_paragraph(slide._element, qn("a:p"), qn("a:t"))]

    def save() -> bytes:
        out = io.BytesIO()
        presentation.save(out)
        return out.getvalue()

    return _paragraphs(runs, lambda e: e.text or "", _set_text, save)


def _odf_runs(node: Any, runs: list[list[Any]], current: list[Any] | None) -> None:
    """The text nodes of each text:p and text:h under `node` (a nested paragraph is a run of its own)."""
    from odf.namespaces import TEXTNS

    for child in node.childNodes:
        if child.nodeType == child.TEXT_NODE:
            if current is not None:
                current.append(child)
        elif child.nodeType == child.ELEMENT_NODE:
            if child.qname in ((TEXTNS, "p"), (TEXTNS, "h")):
                run: list[Any] = []
                runs.append(run)
                _odf_runs(child, runs, run)
            elif child.qname != (TEXTNS, "note-citation"):
                _odf_runs(child, runs, current)


def _odf_file(data: bytes, extension: str) -> Extracted:
    from odf.opendocument import load

    archive = open_zip(data, extension)
    mimetype = _member(archive, "mimetype")
    if mimetype is None or mimetype.strip() != ODF_TYPES[extension].encode():
        raise FileError(f"the file is not a {extension} file (its mimetype entry says otherwise)")
    check_xml(archive)
    try:
        document = load(io.BytesIO(data))
        runs: list[list[Any]] = []
        _odf_runs(document.body, runs, None)
    except Exception as e:  # a library's reaction to a hostile file is not known in advance: always a 400
        raise FileError(f"cannot read the {extension} file ({e.__class__.__name__})") from None

    def put(node: Any, text: str) -> None:
        node.data = text

    def save() -> bytes:
        out = io.BytesIO()
        document.write(out)
        return out.getvalue()

    return _paragraphs(runs, lambda node: node.data, put, save)


def odt_file(data: bytes) -> Extracted:
    """An OpenDocument text: every paragraph and heading of the body (tables, lists and frames included)."""
    return _odf_file(data, ".odt")


def odp_file(data: bytes) -> Extracted:
    """An OpenDocument presentation: every paragraph of every slide."""
    return _odf_file(data, ".odp")


def epub_file(data: bytes) -> Extracted:
    """An EPUB book: the text runs of each XHTML document; every other entry copied as it is."""
    archive = open_zip(data, ".epub")
    if (_member(archive, "mimetype") or b"").strip() != EPUB_TYPE.encode():
        raise FileError("the file is not an .epub file (its mimetype entry says otherwise)")
    check_xml(archive, allow_doctype=True)
    documents: dict[str, BeautifulSoup] = {}
    runs: list[list[NavigableString]] = []
    for info in archive.infolist():
        if info.filename.lower().endswith(XHTML_SUFFIXES):
            soup = BeautifulSoup(archive.read(info), "lxml-xml")  # entities and DTDs refused above
            documents[info.filename] = soup
            runs += text_runs(soup)

    def put(node: NavigableString, text: str) -> None:
        node.replace_with(NavigableString(text))

    def save() -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as book:
            for info in archive.infolist():
                soup = documents.get(info.filename)
                content = archive.read(info) if soup is None else soup.decode(formatter="minimal").encode("utf-8")
                book.writestr(info, content, compress_type=info.compress_type)
        return out.getvalue()

    return _paragraphs(runs, str, put, save)


FORMATS: dict[str, Callable[[bytes], Extracted]] = {  # LibreTranslate 1.9's order (its .pdf left out), then .htm
    ".txt": txt_file,
    ".odt": odt_file,
    ".odp": odp_file,
    ".docx": docx_file,
    ".pptx": pptx_file,
    ".epub": epub_file,
    ".html": html_file,
    ".srt": srt_file,
    ".htm": html_file,
}
MEDIA_TYPES = {
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".srt": "application/x-subrip",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": ODF_TYPES[".odt"],
    ".odp": ODF_TYPES[".odp"],
    ".epub": EPUB_TYPE,
}


def extension(filename: str) -> str:
    """The file name's extension, lower case with its dot ("" when it has none)."""
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return "." + name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else ""


def extract(filename: str, data: bytes) -> Extracted:
    """The translatable text of a file of a supported format (by its extension); FileError when it is not one."""
    reader = FORMATS.get(extension(filename))
    if reader is None:
        raise FileError("file format not supported")
    return reader(data)


def secure_filename(filename: str) -> str:
    """A file name safe to put in a path and a URL (werkzeug's `secure_filename`, as LibreTranslate uses): ASCII
    letters, digits, `_`, `.` and `-`, no directory part, no leading dot."""
    name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    name = "_".join(name.replace("/", " ").replace("\\", " ").split())
    name = re.sub(r"[^A-Za-z0-9_.-]", "", name).strip("._") or "file" + extension(filename)
    if len(name) > MAX_NAME:  # shortened before its extension
        suffix = extension(name)[:20]
        name = name[: MAX_NAME - len(suffix)] + suffix
    return name


def supported_formats() -> list[str]:
    """The extensions /translate_file accepts, as /frontend/settings lists them."""
    return list(FORMATS)
