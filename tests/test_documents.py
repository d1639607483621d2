"""qa.documents: each format's text and source map, the refusals of bad files, and folder walking.

Every fixture is written here, in ``tmp_path``: PDFs with fpdf2 (and pypdf for the encrypted one),
Word files with python-docx, the rest as bytes.
"""
from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

import docx
import pypdf
import pytest
from fpdf import FPDF

from qa import documents
from qa.documents import DocumentError, find_documents, read_document, read_documents

PAGE_TWO_SENTENCE = "The lighthouse keeper counted forty-two ships on Tuesday."

SAVED_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>River Thames - City Guide</title>
<style>body { font-family: Georgia; } .navbar { color: stylesheetcolour; }</style>
<script>var trackingPixel = "analyticsbeacon";</script>
</head><body>
<header><a href="/">CityGuide</a>
  <nav class="navbar"><ul><li><a href="/">Homepage</a></li><li><a href="/travel">Travelmenu</a></li></ul></nav>
</header>
<div class="cookie-banner">We use cookieconsent cookies. <button>Accept</button></div>
<main><article>
<header><h1>The River Thames</h1></header>
<p>The River Thames flows through southern England, including <a href="/london">London</a>.</p>
<h2>History</h2>
<p>The Romans built the first bridge across the river around AD 50.</p>
<p>The summer of 1858 was called the Great Stink.</p>
</article></main>
<aside><h3>Related articles</h3><a href="/severn">Relatedsevern guide</a></aside>
<footer><p>Copyright 2024 CityGuide. Footerprivacy policy.</p></footer>
<script>document.write("inlinewritten");</script>
</body></html>
"""
BOILERPLATE_WORDS = ["stylesheetcolour", "analyticsbeacon", "Homepage", "Travelmenu",
                     "Relatedsevern", "Footerprivacy", "inlinewritten", "CityGuide", "cookieconsent"]

MARKDOWN = """# Ferry Guide

Boats leave **Dover** every hour; see [the timetable](https://example.com/times).

## Prices

| Ticket | Price |
|--------|-------|
| Adult  | 40    |

- Children travel free on Sundays.
- Bicycles cost five pounds.

```
fare = 40
```
"""


def pdf_bytes(pages: list[str]) -> bytes:
    """A PDF with a text layer, one page per string."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def write(path: Path, content: bytes | str) -> Path:
    """``content`` written to ``path`` (str as UTF-8); returns ``path``."""
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.fixture
def three_page_pdf(tmp_path: Path) -> Path:
    return write(tmp_path / "report.pdf", pdf_bytes([
        "Page one is about harbours and their history.",
        f"Page two starts here. {PAGE_TWO_SENTENCE} Then it ends.",
        "Page three is about the weather at sea.",
    ]))


def word_file(path: Path) -> Path:
    """A .docx with a Title, two Heading 1 sections with paragraphs, and a table."""
    document = docx.Document()
    document.add_heading("Annual Report", level=0)
    document.add_paragraph("This report covers the whole year.")
    document.add_heading("Sales", level=1)
    document.add_paragraph("Sales rose by twelve percent in the north.")
    document.add_heading("Staff", level=1)
    document.add_paragraph("The company hired nine engineers.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Oslo", "709,000"
    document.save(str(path))
    return path


def test_pdf_text_and_pages(three_page_pdf: Path) -> None:
    doc = read_document(three_page_pdf)
    assert doc.path == str(three_page_pdf)
    assert PAGE_TWO_SENTENCE in doc.text
    assert doc.locate(doc.text.index(PAGE_TWO_SENTENCE)).page == 2
    assert doc.locate(doc.text.index("harbours")).page == 1
    assert doc.locate(doc.text.index("weather")).page == 3
    assert [section.page for section in doc.sections] == [1, 2, 3]
    page_three = doc.sections[2].start
    assert doc.text[page_three - 2:page_three] == "\n\n"  # pages split by a blank line


def test_html_main_text_without_boilerplate(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path / "thames.html", SAVED_PAGE))
    sentence = "The Romans built the first bridge across the river around AD 50."
    assert sentence in doc.text
    assert "including London." in doc.text  # inline link text stays in its sentence
    assert [word for word in BOILERPLATE_WORDS if word in doc.text] == []
    assert doc.locate(doc.text.index(sentence)).heading == "History"
    assert doc.locate(doc.text.index("southern England")).heading == "The River Thames"
    assert doc.text.startswith("The River Thames\n\n")


def test_html_without_main_drops_site_header_and_footer(tmp_path: Path) -> None:
    page = SAVED_PAGE.replace("<main><article>", "<section>").replace("</article></main>", "</section>")
    doc = read_document(write(tmp_path / "thames.htm", page))
    assert "the Great Stink." in doc.text
    tagged_boilerplate = [word for word in BOILERPLATE_WORDS if word != "cookieconsent"]  # a <div>
    assert [word for word in tagged_boilerplate if word in doc.text] == []
    assert doc.locate(doc.text.index("southern England")).heading == "The River Thames"
    assert doc.locate(doc.text.index("Great Stink")).heading == "History"


def test_docx_paragraphs_headings_and_tables(tmp_path: Path) -> None:
    doc = read_document(word_file(tmp_path / "report.docx"))
    assert doc.text.startswith("Annual Report\nThis report covers the whole year.\nSales\n")
    assert doc.locate(doc.text.index("covers the whole year")).heading == "Annual Report"
    assert doc.locate(doc.text.index("twelve percent")).heading == "Sales"
    assert doc.locate(doc.text.index("nine engineers")).heading == "Staff"
    assert "Oslo | 709,000" in doc.text


def test_markdown_rendered_to_plain_text(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path / "ferry.md", MARKDOWN))
    sentence = "Boats leave Dover every hour; see the timetable."
    assert sentence in doc.text
    assert not any(markup in doc.text for markup in ("**", "](", "# ", "```", "|---"))
    assert doc.locate(doc.text.index(sentence)).heading == "Ferry Guide"
    assert doc.locate(doc.text.index("Children travel free")).heading == "Prices"
    assert "Ticket | Price\nAdult | 40" in doc.text
    assert "Children travel free on Sundays.\nBicycles cost five pounds." in doc.text
    assert "fare = 40" in doc.text
    assert doc.sections[0] == documents.Section(0, heading="Ferry Guide")



@pytest.mark.parametrize("nesting", ["> " * 120, "- " * 150], ids=["quotes", "list"])
def test_markdown_nested_past_the_parsers_limit_loses_no_words(tmp_path: Path, nesting: str) -> None:
    doc = read_document(write(tmp_path / "deep.md", nesting + "Deep words here.\n\nTail paragraph.\n"))
    assert "Deep words here." in doc.text and "Tail paragraph." in doc.text
    shallow = read_document(write(tmp_path / "shallow.md", "> " * 90 + "Deep words here.\n\nTail paragraph.\n"))
    assert shallow.text == "Deep words here.\n\nTail paragraph."  # still rendered, no markup left

def test_latin1_text_decodes(tmp_path: Path) -> None:
    text = "Café São Paulo: pão de queijo e açaí.\n"  # charset-normalizer alone guesses cp1250
    doc = read_document(write(tmp_path / "menu.txt", text.encode("latin-1")))
    assert doc.text == text
    assert doc.sections == [documents.Section(0)]


@pytest.mark.parametrize("encoding, sentence", [
    ("windows-1250", "Praha je hlavní město, říká se."),  # Windows-1252 would read "ø" and "ì" here
    ("iso-8859-2", "Miasto Łódź leży w Polsce."),
    ("koi8-r", "Съешь же ещё этих мягких французских булок."),
    ("shift_jis", "吾輩は猫である。名前はまだ無い。"),
])
def test_a_web_page_in_a_legacy_encoding_is_read_by_its_declared_charset(tmp_path: Path, encoding: str,
                                                                         sentence: str) -> None:
    page = f'<html><head><meta charset="{encoding}"><title>t</title></head><body><p>{sentence}</p></body></html>'
    doc = read_document(write(tmp_path / "page.html", page.encode(encoding)))
    assert doc.text == sentence


def test_utf8_text_with_windows_line_ends(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path / "notes", "Zoë wrote this.\r\nSecond line.\r\n"))
    assert doc.text == "Zoë wrote this.\nSecond line.\n"


def encrypted_pdf() -> bytes:
    """A PDF that needs the password "secret" to open."""
    writer = pypdf.PdfWriter(clone_from=BytesIO(pdf_bytes(["Hidden text."])))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    stream = BytesIO()
    writer.write(stream)
    return stream.getvalue()


def scanned_pdf() -> bytes:
    """A PDF whose one page holds only a drawn rectangle: no text layer."""
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    return bytes(pdf.output())


@pytest.mark.parametrize("name, content, reason", [
    ("locked.pdf", encrypted_pdf, "encrypted"),
    ("scan.pdf", scanned_pdf, "no text layer"),
    ("cut.pdf", lambda: pdf_bytes(["Some text."])[:300], "not a readable PDF"),
    ("broken.docx", lambda: os.urandom(2000), "not a readable Word file"),
    ("empty.txt", lambda: b"", "no text"),
    ("blank.md", lambda: b"  \n\n  \n", "no text"),
    ("nul.txt", lambda: b"valid UTF-8\x00but NUL bytes\x00" * 20, "binary"),
    ("image.txt", lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8, "binary"),
])
def test_bad_files_raise_one_line_errors(tmp_path: Path, name: str, content, reason: str) -> None:
    path = write(tmp_path / name, content())
    with pytest.raises(DocumentError) as caught:
        read_document(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "\n" not in message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"nowhere\.txt: no such file$"):
        read_document(tmp_path / "nowhere.txt")
    with pytest.raises(DocumentError, match="is a folder"):
        read_document(tmp_path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "secret.txt", "text")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)  # root can read a chmod 000 file, so fake it
    with pytest.raises(DocumentError, match=r"secret\.txt: permission denied"):
        read_document(path)


def test_oversized_file_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "huge.txt", "x" * 100)
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 50)

    def must_not_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("an oversized file was opened")

    monkeypatch.setattr(Path, "open", must_not_open)
    with pytest.raises(DocumentError, match=r"huge\.txt: too large \(100 bytes; the limit is 50\)"):
        read_document(path)


def test_library_errors_are_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(raw: bytes) -> None:
        raise KeyError("word/document.xml")

    path = word_file(tmp_path / "fine.docx")
    monkeypatch.setattr(documents.docx, "Document", explode)
    with pytest.raises(DocumentError, match=r"fine\.docx: not a readable Word file \(KeyError"):
        read_document(path)


def test_read_documents_skips_bad_files_and_goes_on(tmp_path: Path, three_page_pdf: Path) -> None:
    write(tmp_path / "a_empty.txt", b"")
    write(tmp_path / "b_notes.md", "# Notes\n\nThe meeting is on Friday.\n")
    write(tmp_path / "c_broken.docx", os.urandom(500))
    write(tmp_path / "d_photo.jpg", b"\xff\xd8\xff")
    skipped: list[tuple[str, str]] = []
    docs = list(read_documents([tmp_path], lambda path, reason: skipped.append((path, reason))))
    assert [Path(doc.path).name for doc in docs] == ["b_notes.md", "report.pdf"]
    assert sorted((Path(path).name, reason.split(" (")[0]) for path, reason in skipped) == [
        ("a_empty.txt", "no text"),
        ("c_broken.docx", "not a readable Word file"),
        ("d_photo.jpg", "not a supported type"),
    ]


def test_read_documents_is_lazy(tmp_path: Path) -> None:
    write(tmp_path / "first.txt", "First file.")
    second = write(tmp_path / "second.txt", "Second file.")
    skipped: list[tuple[str, str]] = []
    stream = read_documents([tmp_path], lambda path, reason: skipped.append((path, reason)))
    assert next(stream).text == "First file."
    second.unlink()  # the second file is only read when asked for
    assert list(stream) == []
    assert skipped == [(str(second), "no such file")]


def test_folder_walk_sorted_hidden_skipped_and_named_files_kept(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    write(folder / "b.txt", "b")
    write(folder / "a.md", "a")
    write(folder / "sub" / "c.html", "<p>c</p>")
    write(folder / "notes", "no suffix")
    write(folder / ".hidden.txt", "secret")
    (folder / ".git").mkdir()
    write(folder / ".git" / "config.txt", "secret")
    named = write(tmp_path / "README", "named files are kept whatever their suffix")
    files, skipped = find_documents([folder, named, tmp_path / "missing"])
    assert [file.relative_to(tmp_path).as_posix() for file in files] == [
        "docs/a.md", "docs/b.txt", "docs/sub/c.html", "README"]
    assert skipped == [(str(folder / "notes"), "not a supported type (no suffix)"),
                       (str(tmp_path / "missing"), "no such file or folder")]


def test_symlink_loop_terminates_and_lists_each_file_once(tmp_path: Path) -> None:
    root = tmp_path / "library"
    (root / "inner").mkdir(parents=True)
    write(root / "top.txt", "top")
    write(root / "inner" / "deep.txt", "deep")
    os.symlink(root, root / "inner" / "back_to_library")
    os.symlink(root / "top.txt", root / "inner" / "alias.txt")
    files, skipped = find_documents([root])
    assert sorted(os.path.realpath(file) for file in files) == sorted(
        os.path.realpath(root / name) for name in ("top.txt", "inner/deep.txt"))
    assert [reason for _, reason in skipped] == ["folder already read (a symbolic link to it)"]


def test_html_text_after_a_heading_is_not_part_of_it(tmp_path: Path) -> None:
    page = ("<html><body><div><h2>Refunds</h2>\nRefunds are paid in ten days.\n<h2>Shipping</h2>\n"
            "Orders ship from Leeds.</div><h3>Prices</h3>Adults pay 40 euros.</body></html>")
    doc = read_document(write(tmp_path / "shop.html", page))
    assert doc.text.split("\n\n") == ["Refunds", "Refunds are paid in ten days.", "Shipping",
                                      "Orders ship from Leeds.", "Prices", "Adults pay 40 euros."]
    assert doc.locate(doc.text.index("Leeds")).heading == "Shipping"
    assert doc.locate(doc.text.index("40 euros")).heading == "Prices"


def test_a_path_that_cannot_be_entered_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "locked" / "inner").mkdir(parents=True)
    locked = write(tmp_path / "locked" / "inner" / "a.txt", "text")
    fine = write(tmp_path / "fine.txt", "text")
    real_is_dir = Path.is_dir

    def is_dir(self: Path) -> bool:  # root may enter any folder, so fake what Python 3.11 raises there
        if locked.parent in (self, *self.parents):
            raise PermissionError(13, "Permission denied")
        return real_is_dir(self)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    files, skipped = find_documents([locked, fine])
    assert files == [fine] and skipped == [(str(locked), "cannot be read (Permission denied)")]


def test_a_file_name_that_is_not_utf8_is_skipped_and_printable(tmp_path: Path) -> None:
    write(tmp_path / "plain.txt", "text")
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt"), "w") as stream:
        stream.write("text")
    files, skipped = find_documents([tmp_path])
    assert [file.name for file in files] == ["plain.txt"]
    assert skipped == [(str(tmp_path) + "/caf\\xe9.txt", "its name is not printable UTF-8 text; rename the file")]
    skipped[0][0].encode("utf-8")  # printable and storable


def test_a_word_file_that_unpacks_past_the_limit_is_refused_before_parsing(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    document = docx.Document()
    document.add_paragraph("Counting sheep. " * 5000)  # 80 kB of XML, packed to a few
    document.save(str(tmp_path / "sheep.docx"))
    assert (tmp_path / "sheep.docx").stat().st_size < 50_000  # under the limit as a file: it is read
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 50_000)
    monkeypatch.setattr(docx, "Document", lambda *args: pytest.fail("parsed before the check"))
    with pytest.raises(DocumentError, match=r"sheep\.docx: unpacks to [\d,]+ bytes; the limit is 50,000"):
        read_document(tmp_path / "sheep.docx")


def test_a_line_break_in_html_separates_words(tmp_path: Path) -> None:
    page = "<p>The office opens at 9am<br>and closes at 5pm.</p><p>Address:<br/>12 Harbour Road<br>Dover</p>"
    doc = read_document(write(tmp_path / "office.html", page))
    assert doc.text == "The office opens at 9am and closes at 5pm.\n\nAddress: 12 Harbour Road Dover"


def test_deeply_nested_inline_html_is_one_block_of_its_words(tmp_path: Path) -> None:
    page = "<main><h2>Sheep</h2><p>" + "<span>baa " * 3000 + "</p><p>The end.</p></main>"  # unclosed spans
    doc = read_document(write(tmp_path / "nested.html", page))
    assert doc.text == "Sheep\n\n" + " ".join(["baa"] * 3000) + "\n\nThe end."
    assert doc.locate(doc.text.index("The end")).heading == "Sheep"


def test_utf8_with_a_stray_or_cut_byte_stays_utf8(tmp_path: Path) -> None:
    text = "São Paulo é grande. Zoë and Jürgen met in Malmö. " * 4
    cut = text[:-2].encode("utf-8")[:-1]  # ends in the middle of its last character, the "ö"
    assert read_document(write(tmp_path / "cut.txt", cut)).text == text[:-3] + "\ufffd"
    stray = text.encode("utf-8").replace(b"grande", b"grand\xe9", 1)  # one Latin-1 byte in UTF-8 text
    doc = read_document(write(tmp_path / "stray.html", b"<p>" + stray + b"</p>"))
    assert "Zoë and Jürgen met in Malmö" in doc.text and "grand\ufffd" in doc.text


def test_a_file_name_with_a_control_character_is_skipped_and_printed_on_one_line(tmp_path: Path) -> None:
    write(tmp_path / "bad\nname.txt", "text")
    files, skipped = find_documents([tmp_path])
    assert files == []
    assert skipped == [(str(tmp_path) + "/bad\\nname.txt", "its name is not printable UTF-8 text; rename the file")]
    with pytest.raises(DocumentError) as error:
        read_document(tmp_path / "bad\nname.txt\x1b")
    assert "\n" not in str(error.value) and "\x1b" not in str(error.value) and "bad\\nname.txt\\x1b" in str(error.value)


def test_docx_content_controls_nested_tables_and_merged_cells_are_read_once(tmp_path: Path) -> None:
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    document = docx.Document()
    document.add_paragraph("Before the control.")
    body = document.element.body  # its last child is the section properties, which stay last
    body.insert(len(body) - 1, parse_xml(f'<w:sdt {nsdecls("w")}><w:sdtContent><w:p><w:r><w:t>The warranty lasts '
                                         'three years.</w:t></w:r></w:p></w:sdtContent></w:sdt>'))
    owner = document.add_paragraph("Owner: ")
    owner._p.append(parse_xml(f'<w:sdt {nsdecls("w")}><w:sdtContent><w:r><w:t>Agnes Mowbray</w:t></w:r>'
                              '</w:sdtContent></w:sdt>'))
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 2)).text = "Ferry fares for the summer season"
    table.cell(1, 0).text, table.cell(1, 1).text = "Adult", "40"
    table.cell(1, 2).add_table(rows=1, cols=1).cell(0, 0).text = "Children travel free"
    document.save(str(tmp_path / "ferry.docx"))
    text = read_document(tmp_path / "ferry.docx").text
    assert "The warranty lasts three years." in text and "Owner: Agnes Mowbray" in text
    assert text.count("Ferry fares for the summer season") == 1
    assert "Adult | 40 | Children travel free" in text


def test_markdown_keeps_the_text_of_raw_html_blocks(tmp_path: Path) -> None:
    page = "# Server\n\n<div>\nThe server listens on port 8080 by default.\n<script>track()</script>\n</div>\n\nThe end.\n"
    doc = read_document(write(tmp_path / "server.md", page))
    assert doc.text == "Server\n\nThe server listens on port 8080 by default.\n\nThe end."
    assert doc.locate(doc.text.index("port 8080")).heading == "Server"


def test_markdown_nested_thirty_quotes_deep_keeps_its_text(tmp_path: Path) -> None:
    doc = read_document(write(tmp_path / "deep.md", "Start.\n\n" + "> " * 30 + "The port is 8080.\n"))
    assert doc.text == "Start.\n\nThe port is 8080."


TEXT_BOX = """<w:r {namespaces}><mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wp:anchor><a:graphic>
<a:graphicData><wps:wsp><wps:txbx><w:txbxContent><w:p><w:r><w:t>Ferries leave from pier 4.</w:t></w:r></w:p>
</w:txbxContent></wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice>
<mc:Fallback><w:pict><v:shape><v:textbox><w:txbxContent><w:p><w:r><w:t>Ferries leave from pier 4.</w:t></w:r></w:p>
</w:txbxContent></v:textbox></v:shape></w:pict></mc:Fallback></mc:AlternateContent></w:r>"""


def test_a_word_text_box_is_read_once_as_its_own_paragraph(tmp_path: Path) -> None:
    """Word saves a text box twice (drawing and fallback shape) inside a run of the paragraph it is anchored to."""
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    document = docx.Document()
    paragraph = document.add_paragraph("The harbour opens at six.")
    others = ('xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
              'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" xmlns:v="urn:schemas-microsoft-com:vml"')
    paragraph._p.append(parse_xml(TEXT_BOX.format(namespaces=f'{nsdecls("w", "wp", "a")} {others}')))
    paragraph.add_run(" Tickets are sold on board.")
    document.save(str(tmp_path / "harbour.docx"))
    text = read_document(tmp_path / "harbour.docx").text
    assert text == "The harbour opens at six. Tickets are sold on board.\nFerries leave from pier 4."
