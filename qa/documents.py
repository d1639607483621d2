"""Files and folders -> documents: each document's plain text, and where each stretch of it sits
(page of a PDF, heading of a Word, Markdown or HTML file, the source path), so that every answer
can cite its source.

``read_document`` reads one file by its suffix; ``find_documents`` expands files and folders into
the files to read; ``read_documents`` reads them one at a time, reporting each unreadable file and
going on. Every failure is a one-line ``DocumentError`` naming the file.

Each format becomes plain text, since answers are slices of ``Document.text`` shown to people:

- Text (``.txt``, ``.text``, any unknown suffix): UTF-8, else the encoding charset-normalizer
  detects, preferring Windows-1252 among equally likely guesses (it ranks cp1250 first for
  Latin-1 Portuguese, turning "São" into "Săo").
- Markdown: rendered to plain text from markdown-it-py's tokens (no ``#``, ``**`` or
  ``[text](url)`` in answers); offsets are exact because the text is built here, block by block,
  recording each heading's start as it is added. Tables keep one row a line, cells split by " | ".
  A file nested about 100 levels deep, where markdown-it stops reading, is kept as plain text.
- HTML: decoded as text is, which honours a page's ``<meta charset>`` (charset-normalizer reads the
  declaration before guessing), then selectolax (lexbor). Scripts, styles, navigation, asides, form controls, hidden
  elements and the site's header and footer are dropped; the text is ``<main>``, else
  ``<article>``, else ``<body>``, one block element a paragraph; h1-h6 become sections. Without
  ``<main>``/``<article>``, boilerplate in plain ``<div>``s (a cookie banner) stays.
- PDF: pypdfium2's text layer, a section per page with text (1-based), pages split by a blank line;
  PDFium's end-of-line hyphen marks are dropped, rejoining the words they split.
- Word (``.docx``): python-docx; paragraphs and table rows, one a line, a text box's paragraphs after
  the paragraph it is anchored in (once: Word also saves a fallback copy); styles "Title" and
  "Heading 1".."Heading 9" become sections.

Libraries measured (2 CPU cores, Python 3.11):

- HTML, trafilatura 2.3.1 vs selectolax 1.0.2. On a saved 2 kB news page (nav, cookie banner,
  JSON-LD, two scripts, style, aside, footer; h1 + two h2, five paragraphs, a list) both kept all
  main text and the three headings and leaked no boilerplate: trafilatura 0.9 ms a page,
  selectolax 0.04 ms; trafilatura also dropped the byline. The same page without
  ``<main>``/``<article>``: selectolax kept the cookie banner's sentence, trafilatura did not.
  A short page (nav, h1, one sentence, footer): trafilatura fell back to its baseline, kept the
  nav link "Homepage" and lost the heading; selectolax got it right. A 29 kB rustdoc page:
  identical text, 3.9 ms vs 0.17 ms. A 950 kB rustdoc API page: 430 ms vs 13 ms, and trafilatura
  dropped every code example and 211 of 738 headings (the method signatures). trafilatura also
  pulls dateparser, babel, pytz, courlan, htmldate and justext, and its import fails under lxml 6
  until ``lxml_html_clean`` is installed by hand. Chosen: selectolax; the reader below, decoding
  included, takes 0.07 ms on the 2 kB page, 0.22 ms on the 29 kB one and 16 ms on the 950 kB one.
- PDF, pypdf 7.1.1 vs pypdfium2 5.15.2. A 5-page fpdf2 file: 1.25 vs 0.34 ms a page, both found
  all 14 probe lines. libtasn1.pdf (36 pages): 8.7 vs 0.66 ms a page; shared-mime-info-spec.pdf
  (17 pages): 8.6 vs 0.63 ms a page; the same words, except that pypdf leaves hyphenated line
  ends split ("manip-\\nulation", 23 of them in libtasn1.pdf) where PDFium marks them (``\\x02``),
  so the words are rejoined here; PDFium writes ``\\r\\n`` line ends (normalized here) and both
  garble a "©" drawn as "c" plus a circle. Chosen: pypdfium2.
"""
from __future__ import annotations

import bisect
import codecs
import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import charset_normalizer
import docx
from docx.oxml.ns import qn
from docx.text.paragraph import Paragraph
import pypdfium2
from markdown_it import MarkdownIt
from markdown_it.token import Token
from selectolax.lexbor import LexborHTMLParser, LexborNode

from qa.errors import UserError

MAX_FILE_BYTES = 64 * 1024 * 1024  # larger files are refused unread
# Raise it with any change here that changes some file's text: the index (qa.index) re-reads every document
# when it, or a version of the libraries below, differs from the one it was built with.
READING_VERSION = 2
_READING_LIBRARIES = ("charset-normalizer", "python-docx", "pypdfium2", "markdown-it-py", "selectolax")

TEXT_SUFFIXES = frozenset({".txt", ".text"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}

# Dropped anywhere in a page: code, styling, menus, side panels, controls and what is hidden.
_HTML_BOILERPLATE = (
    "script, style, noscript, template, nav, aside, button, select, textarea, iframe, svg, dialog,"
    " [hidden], [aria-hidden=true], [role=navigation], [role=complementary], [role=search],"
    " [role=banner], [role=contentinfo]"
)
# A <header> or <footer> outside these is the site's banner or footer (the HTML-AAM rule).
_HTML_SECTIONING_TAGS = frozenset({"article", "aside", "main", "nav", "section"})
_HTML_HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_BLOCK_TAGS = _HTML_HEADING_TAGS | {
    "address", "article", "blockquote", "body", "dd", "div", "dl", "dt", "figcaption",
    "figure", "hr", "li", "main", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
}
_DOCX_HEADING_STYLES = frozenset({"Title", *(f"Heading {level}" for level in range(1, 10))})
_DOCX_TEXT = qn("w:t")  # a run's text; tabs and line breaks are elements of their own:
_DOCX_BREAKS = {qn("w:tab"): "\t", qn("w:br"): "\n", qn("w:cr"): "\n"}
_DOCX_TEXT_BOX = qn("w:txbxContent")
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_PDFIUM_CLEANUP = str.maketrans({"\x02": None, "\x00": None})  # \x02: a hyphen PDFium removed
# markdown-it drops what is nested past maxNesting (commonmark's 20: 30 nested quotes lost their text; past
# 100, 150 nested list items lost the whole file), so a file that reaches the limit is read as plain text
MARKDOWN_NESTING = 100
_MARKDOWN = MarkdownIt("commonmark", {"maxNesting": MARKDOWN_NESTING}).enable(["table", "strikethrough"])


class DocumentError(UserError):
    """A file that cannot be read as a document: the message names it and says why, in one line."""


WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class _Unreadable(Exception):
    """Why a file's content cannot be read, in a few words; the caller adds the file's path."""


@dataclass(frozen=True)
class Section:
    """A stretch of a document's text from character ``start`` up to the next section's start: the
    page it is on (PDF, 1-based) and the heading it falls under (None where the format has none)."""

    start: int
    page: int | None = None
    heading: str | None = None


@dataclass
class Document:
    """One source file as plain text. ``sections`` ascend by ``start``; the first starts at 0."""

    path: str  # as found (relative to the working directory when given so)
    text: str
    sections: list[Section] = field(default_factory=lambda: [Section(0)])
    offset: int = 0  # where ``text`` begins in the file's whole text: a stretch of it retrieved from an index

    def locate(self, offset: int) -> Section:
        """The section holding character ``offset`` of ``text``."""
        starts = [s.start for s in self.sections]
        return self.sections[max(bisect.bisect_right(starts, offset) - 1, 0)]


class _TextBuilder:
    """Joins blocks of text into one string, recording a ``Section`` where a heading or page starts,
    so that section offsets are exact by construction."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.sections = [Section(0)]

    def add(self, block: str, section: Section | None = None, separator: str = "\n\n") -> None:
        """Append ``block`` (skipped when blank); ``section`` (its start is ignored) starts at it."""
        if not block.strip():
            return
        if self.parts:
            self.parts.append(separator)
            self.length += len(separator)
        if section is not None:
            if self.sections[-1].start == self.length:
                self.sections.pop()
            self.sections.append(Section(self.length, section.page, section.heading))
        self.parts.append(block)
        self.length += len(block)

    def result(self) -> tuple[str, list[Section]]:
        """The joined text and its sections."""
        return "".join(self.parts), self.sections


def reading_fingerprint() -> str:
    """What decides a document's text besides its bytes: ``READING_VERSION`` and the reading libraries' versions."""
    from importlib.metadata import version

    return ";".join([str(READING_VERSION), *(f"{name} {version(name)}" for name in _READING_LIBRARIES)])


def _one_line(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters, for an error message."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _decoded_text(raw: bytes) -> str:
    """``raw`` as text with ``\\n`` line ends: UTF-8, else the encoding charset-normalizer finds
    likeliest (Windows-1252 among ties, the usual legacy Western encoding); binary data refused."""
    if b"\x00" in raw and not raw.startswith(WIDE_BOMS):  # NUL bytes without a UTF-16/32 mark: not text
        raise _Unreadable("not a text file (binary data)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = _mostly_utf8(raw) or _likeliest_text(raw)
    if "\x00" in text:
        raise _Unreadable("not a text file (binary data)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _mostly_utf8(raw: bytes) -> str | None:
    """``raw`` as UTF-8 with its few bad bytes replaced (U+FFFD), when it is UTF-8 text with a stray byte
    or a character cut at the end: at least four well-formed non-ASCII characters per bad byte. Else None
    (a legacy encoding, whose non-ASCII bytes are almost never well-formed UTF-8)."""
    text = raw.decode("utf-8-sig", errors="replace")
    bad = text.count("\ufffd") - raw.count("\ufffd".encode())
    wide = sum(1 for character in text if ord(character) > 127) - text.count("\ufffd")
    return text if wide >= 4 * bad else None


def _likeliest_text(raw: bytes) -> str:
    """``raw`` decoded as charset-normalizer finds likeliest, Windows-1252 among ties; binary data refused."""
    matches = charset_normalizer.from_bytes(raw)
    best = matches.best()
    if best is None:
        raise _Unreadable("not a text file (binary data)")
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    return str(next((m for m in tied if "cp1252" in m.could_be_from_charset), best))


def _plain_text(raw: bytes) -> tuple[str, list[Section]]:
    """A text file's text, as one section."""
    return _decoded_text(raw), [Section(0)]


def _inline_text(inline: Token) -> str:
    """The words of a Markdown inline token: text, code and image descriptions, without markup."""
    pieces = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline", "image"):
            pieces.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            pieces.append("\n")
    return "".join(pieces)


def _markdown_text(raw: bytes) -> tuple[str, list[Section]]:
    """A Markdown file rendered to plain text, a section at each heading (see the module doc)."""
    text = _decoded_text(raw)
    tokens = _MARKDOWN.parse(text)
    if any(token.level >= MARKDOWN_NESTING - 1 for token in tokens):  # the parser stopped there: keep every word
        return text, [Section(0)]
    builder = _TextBuilder()
    row: list[str] = []
    for previous, token in zip([Token("", "", 0), *tokens], tokens):
        if token.type in ("fence", "code_block"):
            builder.add(token.content.rstrip("\n"))
        elif token.type == "html_block":  # raw HTML in the Markdown: its text, read as a page's
            builder.add(_html_text(token.content.encode("utf-8"))[0])
        elif token.type == "tr_close":
            builder.add(" | ".join(row), separator="\n")
            row = []
        elif token.type != "inline":
            continue
        elif previous.type in ("th_open", "td_open"):
            row.append(_inline_text(token).strip())
        elif previous.type == "heading_open":
            heading = _inline_text(token)
            builder.add(heading, Section(0, heading=" ".join(heading.split())))
        else:  # a paragraph; a tight list's items go one a line
            builder.add(_inline_text(token), separator="\n" if previous.hidden else "\n\n")
    return builder.result()


def _html_blocks(root: LexborNode) -> Iterator[tuple[str, bool]]:
    """The text of each block of ``root`` in reading order, whitespace collapsed, and whether the
    block is a heading. A block is a run of text nodes with the same nearest block element below
    ``root``, so the text after a heading or paragraph closes is a block of its own; a ``<br>``
    separates the words around it. One pass: each element's nearest block is its own or its parent's,
    looked up, so deeply nested inline tags (unclosed ``<span>``s) cost linear time, not quadratic."""
    nearest: dict[int, LexborNode | None] = {root.mem_id: None}
    pieces: list[str] = []
    current: LexborNode | None = None
    for node in root.traverse(include_text=True):
        inherited = nearest.get(node.parent.mem_id) if node.parent is not None else None
        if node.tag == "br":
            pieces.append(" ")
        if node.tag != "-text":
            if node.mem_id != root.mem_id:
                nearest[node.mem_id] = node if node.tag in _HTML_BLOCK_TAGS else inherited
            continue
        if pieces and _identity(inherited) != _identity(current):
            yield " ".join("".join(pieces).split()), _is_heading(current)
            pieces = []
        pieces.append(node.text_content or "")
        current = inherited
    yield " ".join("".join(pieces).split()), _is_heading(current)


def _identity(node: LexborNode | None) -> int | None:
    """Which element ``node`` is (selectolax's ``==`` compares markup, not identity)."""
    return None if node is None else node.mem_id


def _is_heading(node: LexborNode | None) -> bool:
    """Whether ``node`` is a heading element (h1-h6)."""
    return node is not None and node.tag in _HTML_HEADING_TAGS


def _is_site_banner_or_footer(node: LexborNode) -> bool:
    """Whether a <header> or <footer> belongs to the whole site rather than to an article or
    section of it (whose header may hold the article's title)."""
    ancestor = node.parent
    while ancestor is not None:
        if ancestor.tag in _HTML_SECTIONING_TAGS:
            return False
        ancestor = ancestor.parent
    return True


def _html_text(raw: bytes) -> tuple[str, list[Section]]:
    """A web page's main text without boilerplate, a section at each h1-h6 (see the module doc)."""
    tree = LexborHTMLParser(_decoded_text(raw))
    for node in tree.css(_HTML_BOILERPLATE):
        node.decompose()
    for node in tree.css("header, footer"):
        if _is_site_banner_or_footer(node):
            node.decompose()
    root = tree.css_first("main") or tree.css_first("article") or tree.body
    builder = _TextBuilder()
    for block, is_heading in _html_blocks(root):
        builder.add(block, Section(0, heading=block) if is_heading else None)
    return builder.result()


def _pdf_text(raw: bytes) -> tuple[str, list[Section]]:
    """A PDF's text layer, a section per page; encrypted or text-less PDFs are refused."""
    try:
        pdf = pypdfium2.PdfDocument(raw)
    except pypdfium2.PdfiumError as error:
        if error.err_code == pypdfium2.raw.FPDF_ERR_PASSWORD:
            raise _Unreadable("encrypted PDF (needs a password)") from None
        raise _Unreadable(f"not a readable PDF ({_one_line(str(error))})") from None
    builder = _TextBuilder()
    try:
        for index, page in enumerate(pdf, start=1):
            page_text = page.get_textpage().get_text_bounded()
            page_text = page_text.replace("\r\n", "\n").replace("\r", "\n")
            builder.add(page_text.translate(_PDFIUM_CLEANUP).strip(), Section(0, page=index))
    finally:
        pdf.close()
    if builder.length == 0:
        raise _Unreadable("no text layer (a scanned PDF? it needs OCR first)")
    return builder.result()


def _docx_text(raw: bytes) -> tuple[str, list[Section]]:
    """A Word file's paragraphs and table rows, one a line, a section at each heading style. A file
    that unpacks to more than ``MAX_FILE_BYTES`` is refused before it is parsed (a zip bomb: a 1.7 MB
    file unpacked to 528 MB of XML and took 1.9 GB to read)."""
    with zipfile.ZipFile(BytesIO(raw)) as package:
        unpacked = sum(member.file_size for member in package.infolist())
    if unpacked > MAX_FILE_BYTES:
        raise _Unreadable(f"unpacks to {unpacked:,} bytes; the limit is {MAX_FILE_BYTES:,}")
    builder = _TextBuilder()
    document = docx.Document(BytesIO(raw))
    for text, style in _docx_blocks(document.element.body, document):
        heading = " ".join(text.split()) if style in _DOCX_HEADING_STYLES else None
        builder.add(text, Section(0, heading=heading) if heading else None, separator="\n")
    return builder.result()


def _docx_blocks(element, document) -> Iterator[tuple[str, str]]:
    """The (text, style name) of each paragraph and table row under ``element``, in order, from the XML
    itself: python-docx's own walk skips content controls (``w:sdt``) and nested tables, and repeats a
    merged cell's text once per column it spans."""
    for child in element.iterchildren():
        if child.tag == qn("w:p"):
            paragraph = Paragraph(child, document)
            text, boxes = _paragraph_parts(child)
            yield text, paragraph.style.name if paragraph.style is not None else ""
            for box in boxes:
                yield from _docx_blocks(box, document)
        elif child.tag == qn("w:tbl"):
            for row in child.iterchildren(qn("w:tr")):
                cells = [" ".join(text.strip() for text, _ in _docx_blocks(cell, document) if text.strip())
                         for cell in row.iterchildren(qn("w:tc"))]
                yield " | ".join(cells), ""
        elif child.tag == qn("w:sdt"):
            for content in child.iterchildren(qn("w:sdtContent")):
                yield from _docx_blocks(content, document)


def _paragraph_parts(paragraph) -> tuple[str, list]:
    """A ``w:p`` element's text: its runs wherever they sit (hyperlinks, fields, content controls), tabs
    and line breaks kept; and the text boxes (``w:txbxContent``) anchored in it, whose paragraphs are
    read after it. A markup-compatibility fallback (``mc:Fallback``, where Word saves each text box a
    second time) is skipped. Walked with a stack, not recursion: a hostile file may nest deeply."""
    pieces, boxes, stack = [], [], [paragraph]
    while stack:
        node = stack.pop()
        if node.tag == _DOCX_TEXT:
            pieces.append(node.text or "")
        elif node.tag in _DOCX_BREAKS:
            pieces.append(_DOCX_BREAKS[node.tag])
        elif node.tag == _DOCX_TEXT_BOX:
            boxes.append(node)
        elif node.tag != _MC_FALLBACK:
            stack.extend(reversed(node))
    return "".join(pieces), boxes


_READERS: dict[str, tuple[str, Callable[[bytes], tuple[str, list[Section]]]]] = {
    **{suffix: ("text", _plain_text) for suffix in TEXT_SUFFIXES},
    **{suffix: ("Markdown", _markdown_text) for suffix in MARKDOWN_SUFFIXES},
    **{suffix: ("HTML", _html_text) for suffix in HTML_SUFFIXES},
    ".pdf": ("PDF", _pdf_text),
    ".docx": ("Word", _docx_text),
}


def _file_bytes(file: Path) -> bytes:
    """A regular file's bytes; folders, special files and files over ``MAX_FILE_BYTES`` refused
    before reading."""
    try:
        status = file.stat()
        if stat.S_ISDIR(status.st_mode):
            raise _Unreadable("is a folder, not a file")
        if not stat.S_ISREG(status.st_mode):
            raise _Unreadable("not a regular file")
        if status.st_size > MAX_FILE_BYTES:
            raise _Unreadable(f"too large ({status.st_size:,} bytes; the limit is {MAX_FILE_BYTES:,})")
        with file.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _Unreadable("no such file") from None
    except PermissionError:
        raise _Unreadable("permission denied") from None
    except OSError as error:
        raise _Unreadable(f"cannot read ({error.strerror or error})") from None
    if len(raw) > MAX_FILE_BYTES:  # it grew after stat()
        raise _Unreadable(f"too large (over {MAX_FILE_BYTES:,} bytes)")
    return raw


def _document(path: str | Path) -> Document:
    """``path`` read as a document, or ``_Unreadable`` saying why not."""
    file = Path(path)
    raw = _file_bytes(file)
    kind, reader = _READERS.get(file.suffix.lower(), ("text", _plain_text))
    try:
        text, sections = reader(raw)
    except _Unreadable:
        raise
    except Exception as error:  # parsers raise many undocumented kinds on malformed files
        detail = _one_line(f"{type(error).__name__}: {error}")
        raise _Unreadable(f"not a readable {kind} file ({detail})") from None
    if not text.strip():
        raise _Unreadable("no text")
    return Document(str(path), text, sections)


def read_document(path: str | Path) -> Document:
    """One file as a ``Document``, read by its suffix, or a one-line ``DocumentError`` naming it."""
    try:
        return _document(path)
    except _Unreadable as error:
        raise DocumentError(f"{_printable(path)}: {error}") from None


def _folder_files(folder: Path, skipped: list[tuple[str, str]]) -> Iterator[Path]:
    """The supported, non-hidden files under ``folder``, sorted, following symbolic links but
    entering each real folder once (so a link to an ancestor cannot loop)."""
    visited: set[str] = set()

    def report(error: OSError) -> None:
        skipped.append((_printable(error.filename), f"cannot read the folder ({error.strerror or error})"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=report, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            skipped.append((_printable(dirpath), "folder already read (a symbolic link to it)"))
            dirnames.clear()
            continue
        visited.add(real)
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(name for name in filenames if not name.startswith(".")):
            suffix = Path(name).suffix.lower()
            if suffix in SUPPORTED_SUFFIXES:
                yield Path(dirpath, name)
            else:
                reason = f"not a supported type ({suffix or 'no suffix'})"
                skipped.append((_printable(os.path.join(dirpath, name)), reason))


def skip_warnings(skipped: list[tuple[str, str]]) -> list[str]:
    """One line for each (path, reason) skipped: the warning ``qa ask``, ``qa chat`` and ``qa index`` show."""
    return [f"skipped {path}: {reason}" for path, reason in skipped]


def _path_kind(path: Path) -> str:
    """'folder', 'file', or why ``path`` cannot be read (missing, or a folder on the way not to be entered)."""
    try:
        if path.is_dir():
            return "folder"
        return "file" if path.exists() or path.is_symlink() else "no such file or folder"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def _printable(path: str | Path) -> str:
    """``path`` as text that can be printed on one line and stored: bytes that are not UTF-8 and control
    characters (a newline, an escape) get backslash escapes."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def find_documents(paths: list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files to read from ``paths`` (files as named, folders searched recursively), each real
    file once, and the ``(path, reason)`` of everything skipped (a file whose name is not UTF-8 too:
    it could be neither cited nor stored)."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        kind = _path_kind(path)
        if kind not in ("folder", "file"):
            skipped.append((_printable(given), kind))
            continue
        for file in _folder_files(path, skipped) if kind == "folder" else iter([path]):
            real = os.path.realpath(file)
            if _printable(file) != str(file):
                skipped.append((_printable(file), "its name is not printable UTF-8 text; rename the file"))
            elif real not in seen:
                seen.add(real)
                files.append(file)
    return files, skipped


def read_documents(
    paths: list[str | Path], on_skip: Callable[[str, str], None]
) -> Iterator[Document]:
    """Each readable document under ``paths``, one at a time; every file that is skipped or fails
    goes to ``on_skip(path, reason)`` and the rest still come."""
    files, skipped = find_documents(paths)
    for path, reason in skipped:
        on_skip(path, reason)
    for file in files:
        try:
            document = _document(file)
        except _Unreadable as error:
            on_skip(str(file), str(error))
            continue
        yield document
