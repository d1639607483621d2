"""qa.index: windows of many documents stored in SQLite FTS5, searched by BM25, updated file by file.

Fixtures are small text and Markdown files written in ``tmp_path``; windows of 20 tokens every 15
give the longer ones several windows.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qa import index as index_module
from qa.documents import Section, read_document
from qa.errors import UserError
from qa.index import DATABASE, Index, build_index
from qa.tokenize import tokenize_many
from qa.windows import window_starts

WINDOWS = {"window_tokens": 20, "window_stride": 15}

LIGHTHOUSE = (
    "The lighthouse on Gannet Point was built in 1854 by the harbour board. Its lamp burned whale oil "
    "until 1901, when paraffin replaced it. Keepers lived in a cottage beside the tower and rowed to the "
    "village for supplies. In 1962 the light was automated and the last keeper, Agnes Mowbray, retired to "
    "Dunmore. The tower was painted red and white in 1970 so that ships could see it by day.\n"
)
VALLEY = (
    "# Orchards\n\nThe valley grows apples and pears on terraced slopes. Frost in April can ruin a whole "
    "season of blossom, so growers light smudge pots at night.\n\n# Cheese\n\nThe village dairy makes a "
    "hard cheese from sheep milk. It is aged in limestone caves for fourteen months before sale. Every "
    "autumn the cheesemakers hold a fair where the oldest wheel is cut with a wire by the mayor.\n"
)
WARSAW = "Warsaw stands on the Vistula River, roughly 260 kilometres from the Baltic Sea.\n"
OXYGEN = "Oxygen was discovered by Carl Wilhelm Scheele in Uppsala in 1773.\n"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder of four documents, one of them Markdown with two headings."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in [("lighthouse.txt", LIGHTHOUSE), ("valley.md", VALLEY), ("warsaw.txt", WARSAW),
                       ("oxygen.txt", OXYGEN)]:
        (folder / name).write_text(text)
    return folder


def expected_windows(paths: list[Path]) -> int:
    """How many windows of 20 tokens every 15 the files have."""
    texts = [read_document(path).text for path in paths]
    return sum(len(window_starts(len(tokens), 20, 15)) for tokens in tokenize_many(texts))


def stored_windows(folder: Path) -> list[int]:
    """How many rows the windows table and the FTS table hold."""
    with sqlite3.connect(folder / DATABASE) as connection:
        counts = [connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("windows", "window_terms")]
    connection.close()
    return counts


def check_hit(hit) -> None:
    """A hit is a slice of its document cut at token boundaries, with the document's sections rebased to it."""
    document = read_document(hit.path)
    stop = hit.start + len(hit.text)
    assert document.text[hit.start:stop] == hit.text
    tokens = tokenize_many([document.text])[0]
    assert hit.start in tokens.starts and stop in tokens.ends
    covering = document.locate(hit.start)
    inside = [Section(s.start - hit.start, s.page, s.heading)
              for s in document.sections if hit.start < s.start < stop]
    assert hit.sections == [Section(0, covering.page, covering.heading), *inside]


def test_windows_are_cut_piece_by_piece_as_from_all_tokens_at_once():
    from qa.retrieval import content_terms
    from conftest import split_windows

    long = " ".join(f"The keeper of lighthouse {k} counted {k % 97} ships on Tuesday." for k in range(30_000))
    assert len(long) > 3 * 100_000  # several pieces of qa.tokenize.pieces
    for text in (long, "One two three four five.", *(" ".join(["word"] * n) for n in (19, 20, 21))):
        tokens = tokenize_many([text])[0]
        for size, stride in ((20, 15), (20, 20), (7, 3)):
            expected = [(w.starts[0], w.ends[-1], " ".join(content_terms(w))) for w in split_windows(tokens, size, stride)]
            assert list(index_module._windows(text, size, stride)) == expected, (len(tokens), size, stride)


def test_search_finds_the_window_of_a_sentence_across_documents(docs: Path, tmp_path: Path):
    update = build_index([docs], tmp_path / "index", **WINDOWS)
    assert (update.added, update.documents, update.windows) == (4, 4, expected_windows(sorted(docs.iterdir())))
    assert update.bytes == (tmp_path / "index" / DATABASE).stat().st_size > 0
    assert [p.name for p in (tmp_path / "index").iterdir()] == [DATABASE]  # one file once the update is done
    with Index.open(tmp_path / "index") as index:
        assert len(index) == 4 and index.window_tokens == 20
        for question, name, words in [("Who retired to Dunmore?", "lighthouse.txt", "Agnes Mowbray"),
                                      ("What river does Warsaw stand on?", "warsaw.txt", "Vistula"),
                                      ("Who discovers oxygen?", "oxygen.txt", "Scheele")]:  # lemmas match
            hits = index.search(question, 3)
            assert Path(hits[0].path) == docs / name and words in hits[0].text
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True) and hits[0].score > 0
            for hit in hits:
                check_hit(hit)
        lighthouse = index.search("lighthouse tower keeper", 10)
        assert len(lighthouse) > 1 and {Path(h.path).name for h in lighthouse} == {"lighthouse.txt"}
        assert len(index.search("lighthouse tower keeper", 1)) == 1


def test_hits_carry_their_sections(docs: Path, tmp_path: Path):
    build_index([docs], tmp_path / "index", **WINDOWS)
    with Index.open(tmp_path / "index") as index:
        hit = index.search("Who cuts the oldest wheel with a wire?", 1)[0]
        assert Path(hit.path).name == "valley.md" and "wire" in hit.text
        assert hit.sections[0].heading == "Cheese"
        spanning = [h for h in index.search("smudge pots blossom dairy sheep", 10) if len(h.sections) > 1]
        assert [s.heading for s in spanning[0].sections] == ["Orchards", "Cheese"]
        for hit in [hit, *spanning]:
            check_hit(hit)


def test_an_update_reads_only_what_changed(docs: Path, tmp_path: Path, monkeypatch):
    folder = tmp_path / "index"
    build_index([docs], folder, **WINDOWS)
    (docs / "warsaw.txt").write_text("Krakow lies on the Vistula too, south of Warsaw, below Wawel Hill.\n")
    (docs / "oxygen.txt").unlink()
    (docs / "gold.txt").write_text("Gold has the symbol Au and melts at 1064 degrees Celsius.\n")
    reads = []
    monkeypatch.setattr(index_module, "read_document",
                        lambda path: reads.append(Path(path).name) or read_document(path))
    progress = []
    update = build_index([docs], folder, progress=lambda done, total: progress.append((done, total)), **WINDOWS)
    assert (update.added, update.changed, update.removed, update.unchanged) == (1, 1, 1, 2)
    assert sorted(reads) == ["gold.txt", "warsaw.txt"]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert (update.documents, update.windows) == (4, expected_windows(sorted(docs.iterdir())))
    assert stored_windows(folder) == [update.windows, update.windows]  # no terms left of removed windows
    with Index.open(folder) as index:
        assert len(index) == 4
        assert index.search("Baltic Sea kilometres", 5) == []  # the old text of warsaw.txt is gone
        assert Path(index.search("Wawel Hill", 1)[0].path).name == "warsaw.txt"
        assert Path(index.search("gold melts", 1)[0].path).name == "gold.txt"
        assert index.search("Scheele Uppsala", 5) == []
    reads.clear()
    again = build_index([docs], folder, **WINDOWS)
    assert (again.added, again.changed, again.removed, again.unchanged, reads) == (0, 0, 0, 4, [])


def test_unreadable_files_are_skipped_and_dropped(docs: Path, tmp_path: Path):
    folder = tmp_path / "index"
    build_index([docs], folder, **WINDOWS)
    (docs / "oxygen.txt").write_bytes(b"\x00\x01binary")
    (docs / "photo.jpg").write_bytes(b"\xff\xd8")
    update = build_index([docs], folder, **WINDOWS)
    assert (update.removed, update.unchanged, update.documents) == (1, 3, 3)
    assert dict(update.skipped) == {str(docs / "oxygen.txt"): "not a text file (binary data)",
                                    str(docs / "photo.jpg"): "not a supported type (.jpg)"}
    with Index.open(folder) as index:
        assert index.search("Scheele oxygen", 5) == []


def test_a_mistyped_path_is_refused_and_the_index_kept(docs: Path, tmp_path: Path):
    folder = tmp_path / "index"
    build_index([docs], folder, **WINDOWS)
    with pytest.raises(UserError, match="dcos: no such file or folder; the index was not changed"):
        build_index([tmp_path / "dcos"], folder, **WINDOWS)
    with Index.open(folder) as index:
        assert len(index) == 4


def test_documents_are_stored_by_absolute_path(docs: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build_index(["docs"], "index", **WINDOWS)
    again = build_index([docs], "index", **WINDOWS)  # the same folder, named another way
    assert (again.added, again.removed, again.unchanged) == (0, 0, 4)
    monkeypatch.chdir(docs)
    with Index.open(tmp_path / "index") as index:
        hit = index.search("Vistula", 1)[0]
    assert hit.path == str(docs / "warsaw.txt")
    check_hit(hit)  # readable from any folder


def test_a_damaged_index_is_one_line_to_rebuild(docs: Path, tmp_path: Path):
    folder = tmp_path / "index"
    build_index([docs], folder, **WINDOWS)
    database = folder / DATABASE
    size = database.stat().st_size
    with open(database, "r+b") as stream:  # keep the header and meta table, overwrite the rest
        stream.seek(size // 4)
        stream.write(b"\xa5" * (size - size // 4))
    with pytest.raises(UserError, match="the index cannot be used .*delete the folder and build it again"):
        with Index.open(folder) as index:
            index.search("Vistula lighthouse Dunmore oxygen", 3)
    with pytest.raises(UserError, match="the index cannot be used"):
        build_index([docs], folder, **WINDOWS)


def test_an_index_inside_the_indexed_folder_ignores_itself(docs: Path):
    build_index([docs], docs / "index", **WINDOWS)
    update = build_index([docs], docs / "index", **WINDOWS)
    assert (update.unchanged, update.documents, update.skipped) == (4, 4, [])


def test_an_interrupted_update_leaves_a_usable_index(docs: Path, tmp_path: Path):
    folder = tmp_path / "index"
    build_index([docs / "warsaw.txt", docs / "oxygen.txt"], folder, **WINDOWS)

    def stop_at_second(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # lighthouse.txt is written, then the run stops after oxygen.txt
        build_index([docs], folder, progress=stop_at_second, **WINDOWS)
    with Index.open(folder) as index:
        assert len(index) == 3
        assert Path(index.search("Who retired to Dunmore?", 1)[0].path).name == "lighthouse.txt"
        assert Path(index.search("Vistula", 1)[0].path).name == "warsaw.txt"
        assert index.search("smudge pots", 1) == []
    update = build_index([docs], folder, **WINDOWS)
    assert (update.added, update.unchanged, update.documents) == (1, 3, 4)


def test_a_document_fails_whole_or_not_at_all(docs: Path, tmp_path: Path, monkeypatch):
    folder = tmp_path / "index"
    windows = build_index([docs], folder, **WINDOWS).windows
    (docs / "lighthouse.txt").write_text(LIGHTHOUSE.replace("Dunmore", "Kilkee") + LIGHTHOUSE)
    real_windows = index_module._windows

    def failing_windows(*args):  # the third window cannot be stored: the error comes mid-transaction
        windows = list(real_windows(*args))
        return windows[:2] + [(0, 1, object())] + windows[3:]

    monkeypatch.setattr(index_module, "_windows", failing_windows)
    with pytest.raises(sqlite3.Error):
        build_index([docs], folder, **WINDOWS)
    with Index.open(folder) as index:  # the old lighthouse.txt, whole
        assert len(index) == 4 and index.search("Kilkee", 1) == []
        assert Path(index.search("Dunmore", 1)[0].path).name == "lighthouse.txt"
    assert stored_windows(folder) == [windows, windows]
    monkeypatch.setattr(index_module, "_windows", real_windows)
    assert build_index([docs], folder, **WINDOWS).changed == 1


def test_settings_are_checked(docs: Path, tmp_path: Path):
    folder = tmp_path / "index"
    build_index([docs], folder, **WINDOWS)
    with Index.open(folder, window_tokens=20, window_stride=15) as index:
        assert index.window_stride == 15
    with pytest.raises(UserError, match="window_tokens 20, not 200.*qa index"):
        Index.open(folder, window_tokens=200, window_stride=150)
    rebuilt = build_index([docs], folder)  # other windows: rebuilt from scratch
    assert (rebuilt.added, rebuilt.unchanged, rebuilt.windows) == (4, 0, 4)
    for key, value, message in [("tokenizer", "spacy 2", "another tokenizer.*qa index"),
                                ("version", "0", "version 0.*qa index"),
                                ("reading", "1", "another version of the document readers.*qa index")]:
        with sqlite3.connect(folder / DATABASE) as connection:
            original = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
            connection.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        connection.close()
        with pytest.raises(UserError, match=message):
            Index.open(folder)
        with sqlite3.connect(folder / DATABASE) as connection:
            connection.execute("UPDATE meta SET value = ? WHERE key = ?", (original, key))
        connection.close()
        Index.open(folder).close()


def test_questions_are_never_read_as_fts_syntax(docs: Path, tmp_path: Path):
    build_index([docs], tmp_path / "index", **WINDOWS)
    with Index.open(tmp_path / "index") as index:
        for question in ['"NEAR(" AND -- OR *', 'NOT near(a b) ^col: {x} "', "Warsaw* OR NOT -- ( Vistula"]:
            index.search(question, 3)
        assert Path(index.search("Warsaw* OR NOT -- ( Vistula", 1)[0].path).name == "warsaw.txt"
        assert index.search("What is the of those?", 3) == []  # only stop words
        assert index.search("Where was it?", 3) == [] and index.search("", 3) == []


def test_folders_that_hold_no_index_are_refused(docs: Path, tmp_path: Path):
    with pytest.raises(UserError, match="holds other files and no index"):
        build_index([docs], docs, **WINDOWS)
    assert sorted(p.name for p in docs.iterdir()) == ["lighthouse.txt", "oxygen.txt", "valley.md", "warsaw.txt"]
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / DATABASE).write_text("not a database, just a file with the same name " * 40)
    for attempt in (lambda: build_index([docs], tmp_path / "fake", **WINDOWS), lambda: Index.open(tmp_path / "fake")):
        with pytest.raises(UserError, match="cannot be used .*file is not a database.*if it is damaged, delete"):
            attempt()
    with pytest.raises(UserError, match="no index here"):
        Index.open(tmp_path / "nowhere")
    assert build_index([docs], tmp_path / "new" / "nested", **WINDOWS).documents == 4


def test_another_version_of_the_document_readers_reads_every_document_again(docs: Path, tmp_path: Path, monkeypatch):
    folder = tmp_path / "index"
    build_index([docs], folder, **WINDOWS)
    monkeypatch.setattr("qa.documents.READING_VERSION", 10**6)  # a reader fixed since the index was built
    update = build_index([docs], folder, **WINDOWS)
    assert (update.added, update.unchanged, update.documents) == (4, 0, 4)
    Index.open(folder).close()


@pytest.mark.parametrize("case", ["empty", "unreadable"])
def test_a_folder_with_no_readable_document_leaves_the_index_as_it_was(docs: Path, tmp_path: Path, case: str):
    folder = tmp_path / "index"
    build_index([docs], folder, **WINDOWS)
    if case == "empty":  # an unmounted drive's mount point
        for file in docs.iterdir():
            file.unlink()
    else:
        for file in docs.iterdir():
            file.write_bytes(b"\x00\x01binary")
    with pytest.raises(UserError, match="no readable document found; the index of 4 documents was not changed"):
        build_index([docs], folder, **WINDOWS)
    with Index.open(folder) as index:
        assert len(index) == 4 and Path(index.search("Vistula", 1)[0].path).name == "warsaw.txt"


def test_a_database_of_something_else_is_never_deleted(docs: Path, tmp_path: Path):
    folder = tmp_path / "other"
    folder.mkdir()
    with sqlite3.connect(folder / DATABASE) as connection:
        connection.execute("CREATE TABLE meta(key TEXT, value TEXT)")
        connection.execute("CREATE TABLE precious(row TEXT)")
        connection.execute("INSERT INTO precious VALUES ('keep me')")
    connection.close()
    for attempt in (lambda: build_index([docs], folder, **WINDOWS), lambda: Index.open(folder)):
        with pytest.raises(UserError, match="not a qa index"):
            attempt()
    with sqlite3.connect(folder / DATABASE) as connection:
        assert connection.execute("SELECT row FROM precious").fetchall() == [("keep me",)]
    connection.close()


def test_an_index_another_process_is_writing_is_busy_not_damaged(docs: Path, tmp_path: Path, monkeypatch):
    folder = tmp_path / "index"
    build_index([docs], folder, **WINDOWS)
    connect = index_module._connect

    def impatient(database):  # the 10 s wait for the writer's commit, cut short
        connection = connect(database)
        connection.execute("PRAGMA busy_timeout = 0")
        return connection

    monkeypatch.setattr(index_module, "_connect", impatient)
    writer = sqlite3.connect(folder / DATABASE, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        for attempt in (lambda: build_index([docs], folder, **WINDOWS), lambda: Index.open(folder)):
            with pytest.raises(UserError, match="the index is busy .*another qa index") as error:
                attempt()
            assert "delete" not in str(error.value)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_two_updates_at_once_say_so_and_leave_a_usable_index(docs: Path, tmp_path: Path):
    folder = tmp_path / "index"
    started = []

    def second_update(done: int, total: int) -> None:  # another qa index runs while the first is under way
        if not started:
            started.append(True)
            build_index([docs], folder, **WINDOWS)

    with pytest.raises(UserError, match="the index changed while this update ran .*run it again") as error:
        build_index([docs], folder, progress=second_update, **WINDOWS)
    assert "delete" not in str(error.value)
    with Index.open(folder) as index:
        assert len(index) == 4
