"""Asking a collection of documents: windows of all documents read together, never across two of
them, and every answer citing its document, page or heading (qa.collection, Reader.predict_documents,
qa ask PATH..., qa evaluate --collection/--without-own)."""
import json

import pytest

from qa.cli import main
from qa.collection import SEPARATOR, Collection
from qa.documents import Document, Section
from qa.reader import Reader
from qa.windows import segment_windows

from conftest import PASSAGES

REPORT_PAGES = ["The annual report covers the year 2025. Revenue grew in every region of the company.",
                "The company opened a new factory in Lyon in March 2025. The factory employs 420 people.",
                "The board appointed Maria Keller as chief financial officer in June."]


@pytest.fixture(scope="module")
def fast():
    return Reader.load("fast")


def _documents() -> list[Document]:
    """The fixture passages as three documents, the second with two sections under headings."""
    normans, warsaw, oxygen = (p["context"] for p in PASSAGES)
    return [Document("normans.txt", normans),
            Document("cities.md", "Cities\n" + warsaw + "\nElements\n" + oxygen,
                     [Section(0, heading="Cities"), Section(len("Cities\n" + warsaw + "\n"), heading="Elements")]),
            Document("empty-heading.txt", "Nothing of note happened on that quiet Sunday afternoon.")]


def test_windows_stay_inside_their_document():
    assert segment_windows(25, [0, 8, 20], size=5, stride=4) == [(0, 5), (3, 8), (8, 13), (12, 17), (15, 20),
                                                                   (20, 25)]
    assert segment_windows(10, [0, 3], size=5, stride=4) == [(0, 3), (3, 8), (5, 10)]  # a short document: one window


def test_the_joined_text_keeps_every_documents_offsets():
    documents = _documents()
    collection = Collection(documents)
    assert collection.text == SEPARATOR.join(d.text for d in documents)
    for k, document in enumerate(documents):
        first = collection.breaks[k]
        assert collection.tokens.starts[first] == collection.offsets[k]  # each document starts a token
        assert collection.document_at(collection.offsets[k]) == k
        assert collection.text[collection.offsets[k] : collection.offsets[k] + len(document.text)] == document.text


def test_answers_come_from_the_right_document_with_their_heading(fast):
    collection = Collection(_documents())
    questions = ["Who discovered oxygen?", "What river does Warsaw stand on?", "Who led the Normans?"]
    predictions = fast.predict_documents(questions, collection, force=True)
    expected = [("cities.md", "Elements", "Carl Wilhelm Scheele"), ("cities.md", "Cities", "Vistula River"),
                ("normans.txt", None, "Rollo")]
    for prediction, (path, heading, text) in zip(predictions, expected):
        best = prediction.answers[0]
        assert text in best.text
        assert (best.source.path, best.source.heading) == (path, heading)
        document = next(d for d in collection.documents if d.path == path)
        assert document.text[best.source.start : best.source.end] == best.text


def test_a_question_without_its_own_document_answers_from_another(fast):
    collection = Collection(_documents())
    [with_own, without_own] = fast.predict_documents(["Who discovered oxygen?"] * 2, collection, top_k=3,
                                                     force=True, without=[None, 1])
    assert with_own.answers[0].source.path == "cities.md"
    assert without_own.answers and all(a.source.path != "cities.md" for a in without_own.answers)


def test_the_top_answers_may_come_from_different_documents(fast):
    documents = [Document("a.txt", "The bridge was built by Anna Berg in 1901."),
                 Document("b.txt", "The tower was built by Jonas Lind in 1899.")]
    answers = fast.answer_documents("Who built it?", Collection(documents), top_k=4, force=True)
    assert {a.source.path for a in answers} == {"a.txt", "b.txt"}



def test_the_library_takes_one_path_as_a_path_not_as_its_characters(fast, tmp_path, monkeypatch):
    (tmp_path / "bridge.txt").write_text("The bridge was built by Anna Berg in 1901.")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "tower.txt").write_text("The tower was built by Jonas Lind in 1899.")
    monkeypatch.chdir(tmp_path)  # "." (a character of the name) would read every file here
    for path in ("bridge.txt", tmp_path / "bridge.txt"):
        answers = fast.answer_documents("Who built it?", path, top_k=4, force=True)
        assert answers and {a.source.path for a in answers} == {"bridge.txt" if isinstance(path, str) else str(path)}

def test_the_library_reads_a_text_over_a_million_characters(fast):
    filler = "The quiet committee met again and spoke about nothing of note. " * 16_000
    context = filler + "Warsaw stands on the Vistula River." + filler
    assert len(context) > 1_000_000
    answer = fast.answer("What river does Warsaw stand on?", context, force=True)[0]
    assert answer.text == "Vistula River" and context[answer.start : answer.end] == answer.text


def _write_documents(folder):
    """A PDF of three pages, a DOCX with headings and a saved HTML page, written by the libraries users have."""
    import docx
    from fpdf import FPDF

    folder.mkdir()
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in REPORT_PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(folder / "annual-report.pdf"))
    word = docx.Document()
    word.add_heading("Travel policy", 0)
    word.add_heading("Hotels", 1)
    word.add_paragraph("Hotel rooms are booked through the travel office in Basel.")
    word.save(str(folder / "policy.docx"))
    (folder / "page.html").write_text(
        "<html><head><script>var leader = 'Nobody';</script></head><body><nav>Home About</nav><main><h1>Normans</h1>"
        f"<p>{PASSAGES[0]['context']}</p></main><footer>Copyright</footer></body></html>")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF")


def test_ask_a_folder_answers_with_the_page_and_skips_a_broken_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the temporary folder's long path on one line
    _write_documents(tmp_path / "docs")
    assert main(["ask", "Where did the company open a new factory?", str(tmp_path / "docs"), "--model", "fast"]) == 0
    out, err = capsys.readouterr()
    assert "Answer: Lyon" in out and "annual-report.pdf, page 2" in out
    assert "most attended spans" not in out and "the answer drew on" not in out  # the short view
    assert "broken.pdf" in err and err.count("warning") == 1 and "3 documents read, 1 files skipped" in err


def test_ask_json_cites_the_heading_of_a_word_file(tmp_path, capsys):
    _write_documents(tmp_path / "docs")
    assert main(["ask", "Where are hotel rooms booked?", str(tmp_path / "docs" / "policy.docx"), "--model", "fast",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "Basel"
    assert result["source"]["path"].endswith("policy.docx") and result["source"]["heading"] == "Hotels"
    assert result["documents"] == [str(tmp_path / "docs" / "policy.docx")] and result["skipped"] == []


def test_a_single_bad_file_is_one_line_and_exit_2(tmp_path, capsys):
    _write_documents(tmp_path / "docs")
    assert main(["ask", "Who?", str(tmp_path / "docs" / "broken.pdf"), "--model", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("qa: error: ") and "broken.pdf" in err


def test_abstaining_on_a_collection_says_none_of_the_documents_answers(abstaining_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    _write_documents(tmp_path / "docs")
    assert main(["ask", "Who is the mayor of Oslo?", str(tmp_path / "docs"), "--model", str(abstaining_model)]) == 0
    out = capsys.readouterr().out
    assert "None of the 3 documents seems to answer this question." in out and "Source: " in out


def test_evaluate_in_the_open_setting_cites_articles_and_abstains_without_own(abstaining_model, squad_file, tmp_path):
    from qa.evaluation import run_evaluation

    opened = run_evaluation(str(squad_file), model="fast", output=str(tmp_path / "open"), open_setting="collection")
    nbest = json.loads((tmp_path / "open" / "nbest.json").read_text())
    assert opened["documents"] == 3 and opened["f1"] > 50
    titles = {qid: p["title"] for p in PASSAGES for qid, _, _ in p["qas"]}
    right = [qid for qid, answers in nbest.items() if answers[0]["source"]["path"] == titles[qid]]
    assert len(right) >= 6  # most answers come from the question's own article
    without = run_evaluation(str(squad_file), model=str(abstaining_model), output=str(tmp_path / "without"),
                             open_setting="without own")
    nbest = json.loads((tmp_path / "without" / "nbest.json").read_text())
    assert all(a["source"]["path"] != titles[qid] for qid, answers in nbest.items() for a in answers)
    assert without["abstention"]["false_abstention_rate"] == 1.0 and without["open_setting"] == "without own"


def test_joined_hits_cover_overlapping_windows_once():
    from qa.index import Hit, joined

    text = "Orchards grow apples. Cheese is made from milk. The dairy stands by the river."
    cheese = text.index("Cheese")
    hits = [Hit("a.md", text[9:21], 9, [Section(0, heading="Orchards")], 3.0),
            Hit("b.txt", "Other text.", 0, [Section(0)], 2.0),
            Hit("a.md", text[14:], 14, [Section(0, heading="Orchards"), Section(cheese - 14, heading="Cheese")], 1.0)]
    first, other = joined(hits)
    assert (first.start, first.text, first.score) == (9, text[9:], 3.0) and other.path == "b.txt"
    assert [(s.start + 9, s.heading) for s in first.sections] == [(9, "Orchards"), (cheese, "Cheese")]


def test_ask_an_index_cites_the_file_and_its_offsets(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    folder = tmp_path / "docs"
    folder.mkdir()
    for passage in PASSAGES:
        (folder / f"{passage['title']}.txt").write_text("Some opening words.\n\n" + passage["context"])
    assert main(["index", str(folder), "--output", str(tmp_path / "index")]) == 0
    assert "3 documents" in capsys.readouterr().out
    assert main(["ask", "Who discovered oxygen?", "--index", str(tmp_path / "index"), "--model", "fast", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "Carl Wilhelm Scheele" and result["source"]["path"] == str(folder / "Oxygen.txt")
    text = (folder / "Oxygen.txt").read_text()
    assert text[result["source"]["start"] : result["source"]["end"]] == "Carl Wilhelm Scheele"
    assert main(["ask", "Who discovered oxygen?", "--index", str(tmp_path / "index"), "--model", "fast"]) == 0
    assert "Oxygen.txt" in capsys.readouterr().out


def test_a_question_no_indexed_window_matches_finds_no_answer(tmp_path, fast):
    from qa.index import Index, build_index

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "warsaw.txt").write_text(PASSAGES[1]["context"])
    build_index([tmp_path / "docs"], tmp_path / "index")
    with Index.open(tmp_path / "index") as index:
        [(collection, prediction)] = fast.predict_index(["Who discovered penicillin?"], index)
        [(found, answered)] = fast.predict_index(["What river does Warsaw stand on?"], index, force=True)
    assert collection is None and prediction.answers == [] and prediction.text == ""
    assert answered.text == "Vistula River" and answered.answers[0].source.path.endswith("warsaw.txt")
    assert found.text[answered.answers[0].start : answered.answers[0].end] == "Vistula River"


def test_too_much_text_is_refused_as_it_is_read_not_after(tmp_path, monkeypatch):
    from qa import collection, documents
    from qa.context import Context
    from qa.errors import UserError

    for k in range(5):
        (tmp_path / f"{k}.txt").write_text(f"Document {k}. " + "Words of text. " * 6)  # 102 characters
    read = []
    real = documents._document
    monkeypatch.setattr(documents, "_document", lambda path: read.append(path.name) or real(path))
    monkeypatch.setattr(collection, "MAX_COLLECTION_CHARS", 250)
    with pytest.raises(UserError, match="the documents hold 310 characters; more than 250 are read through an index"):
        Context.of_paths([tmp_path])
    assert read == ["0.txt", "1.txt", "2.txt"]  # the rest never read


def test_the_html_page_never_replaces_an_indexed_document(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "normans.txt").write_text(PASSAGES[0]["context"])
    assert main(["index", str(folder), "--output", str(tmp_path / "index")]) == 0
    monkeypatch.chdir(folder)  # named relatively, as users type it
    assert main(["ask", "Who led the Normans?", "--index", str(tmp_path / "index"), "--html", "normans.txt"]) == 2
    assert "normans.txt: is one of the files being read" in capsys.readouterr().err
    assert (folder / "normans.txt").read_text() == PASSAGES[0]["context"]
