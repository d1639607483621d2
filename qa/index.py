"""Documents -> an on-disk index of their windows (``qa index``), and questions -> the best windows of
all of them (``qa ask --index DIR``), so that a collection too large to read in memory is still asked.

One SQLite database, ``DIR/index.sqlite``, holds everything:

- ``meta(key, value)``: ``version`` (``INDEX_VERSION``), ``window_tokens``, ``window_stride``,
  ``tokenizer`` (a digest of what decides tokens and lemmas: spaCy and lemma-table versions, our
  infixes and stop words, ``qa.features.PREPARE_VERSION``) and ``reading`` (what decides a file's text:
  ``qa.documents.reading_fingerprint``). An index whose meta differ is refused by ``Index.open`` and
  rebuilt from scratch by ``build_index``; a database without them is not an index and is never touched.
- ``documents(id, path, sha256, size, text, sections)``: each file as indexed: its path as found, the
  SHA-256 and size of its bytes (an update re-reads only files whose digest changed), its plain text
  and its sections as JSON ``[[start, page, heading], ...]``.
- ``windows(id, document, start, stop)``: each window's ``[start, stop)`` characters in its document:
  ``window_tokens`` tokens every ``window_stride`` tokens (``qa.windows.window_starts``).
- ``window_terms(terms)``: an FTS5 table whose rowid is ``windows.id`` and whose text is the window's
  ``qa.retrieval.content_terms`` joined by spaces, under FTS5's ``ascii`` tokenizer (which splits
  only at ASCII non-alphanumerics, so each content lemma is one FTS term, unchanged), so windows are
  ranked by the same terms as the in-memory BM25 ranker, with FTS5's ``bm25()`` (k1 1.2, b 0.75;
  its IDF floors common terms at a tiny positive weight where ``rank_bm25`` uses a fraction of the
  mean IDF).

Each document is written in one transaction (its row, windows and terms together), and removals in
one more, so an interrupted update leaves a usable index: the documents written before still answer
and the next run finishes the job. Journal: WAL with ``synchronous=NORMAL`` while updating, because a
commit then costs 0.13 ms instead of 8.2 ms under the rollback journal (measured here, 500 commits),
still atomic after a crash; the update ends by switching back to the rollback journal, so the finished
index is one plain file, with no -wal or -shm file beside it to copy or to be able to write.

Memory is bounded by one document: files are hashed in a stream, read and tokenized one at a time,
and a search reads only the k hits (the window's text is cut out by ``substr`` in SQL, which counts
characters of TEXT as Python counts ``str`` offsets).

Why SQLite FTS5 rather than tantivy (0.27.0): it ships with Python (no dependency, no wheel to
match), and one transaction covers a document's text, windows and postings, where tantivy would need a
second store for texts and offsets and a crash between the two commits would leave them disagreeing.
Measured on 45 SQuAD train articles (1.5 M characters, 1,880 windows of 200 tokens, 2 busy CPU cores):
tokenizing and cutting the windows 0.7 s (spaCy, the same for both engines); storing the prepared
windows 51 ms in FTS5 against 116 ms in tantivy (insert and commit, one thread); a query 0.6 ms in FTS5
(``Index.search`` with the question's tokenizing and the 4 hits' rows: 0.6 ms) against 0.02 ms in
tantivy. Tantivy's faster queries do not matter beside the reader's forward pass (tens of ms and
more); FTS5 scores every window matching a term, so its query time grows with the collection
(block-max WAND spares tantivy that), which would matter only at millions of windows.

Not handled: two ``build_index`` runs on one folder at once (each document's transaction waits for
the other's, but both may try to add the same path, and the second fails on the unique path).
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qa.documents import MAX_FILE_BYTES, DocumentError, Section, find_documents, read_document, reading_fingerprint
from qa.errors import UserError
from qa.retrieval import content_term, content_terms
from qa.tokenize import tokenize_in_pieces, tokenize_many
from qa.windows import check_windows

INDEX_VERSION = 1
DATABASE = "index.sqlite"  # the index's one file inside its folder
_JOURNAL_FILES = ("-wal", "-shm", "-journal")  # SQLite's companions of DATABASE

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
                       size INTEGER NOT NULL, text TEXT NOT NULL, sections TEXT NOT NULL);
CREATE TABLE windows(id INTEGER PRIMARY KEY, document INTEGER NOT NULL REFERENCES documents(id),
                     start INTEGER NOT NULL, stop INTEGER NOT NULL);
CREATE INDEX windows_by_document ON windows(document);
CREATE VIRTUAL TABLE window_terms USING fts5(terms, tokenize='ascii');
"""

# The k best windows first (FTS5's rank is bm25(), lower is better; ties go to the earlier window),
# then only their rows: the window's text is cut out of its document in SQL.
_SEARCH = """
WITH best AS MATERIALIZED (
    SELECT rowid AS window, rank FROM window_terms WHERE window_terms MATCH ? ORDER BY rank, rowid LIMIT ?)
SELECT documents.path, substr(documents.text, windows.start + 1, windows.stop - windows.start),
       windows.start, documents.sections, -best.rank
FROM best JOIN windows ON windows.id = best.window JOIN documents ON documents.id = windows.document
ORDER BY best.rank, best.window
"""


@dataclass(frozen=True)
class Hit:
    """One window found for a question: its text, where it sits, and its BM25 score (higher is better)."""

    path: str  # the document's path as indexed
    text: str  # the window's text: document.text[start:start + len(text)]
    start: int  # character offset of the window in its document's text
    sections: list[Section]  # rebased to ``text``: the first (at 0) covers ``start``, the rest start inside
    score: float


@dataclass
class IndexUpdate:
    """What ``build_index`` did: files added, changed, removed, unchanged and skipped, and the index after."""

    added: int
    changed: int
    removed: int
    unchanged: int
    skipped: list[tuple[str, str]]  # (path, reason)
    documents: int
    windows: int
    bytes: int  # size of the index on disk


def _tokenizer_key() -> str:
    """A digest of everything besides the text that decides tokens and lemmas."""
    from qa.features import tokenizer_fingerprint

    return hashlib.sha256(tokenizer_fingerprint().encode()).hexdigest()[:32]


def _settings(window_tokens: int, window_stride: int) -> dict[str, str]:
    """The meta rows of an index built now with these windows."""
    return {"version": str(INDEX_VERSION), "window_tokens": str(window_tokens),
            "window_stride": str(window_stride), "tokenizer": _tokenizer_key(), "reading": reading_fingerprint()}


def _connect(database: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), waiting for another writer's commit."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = 10000")
    return connection


def _stored_settings(connection: sqlite3.Connection, database: Path) -> dict[str, str] | None:
    """The index's meta rows; None for an empty database; ``UserError`` for a database of something else
    (never to be deleted as an old index) and for a file SQLite cannot read (a damaged index)."""
    try:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        stored = dict(connection.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
    except sqlite3.DatabaseError as error:
        raise _database_error(database.parent, error) from None
    if "version" not in stored or not {"documents", "windows"} <= tables:
        raise UserError(f"{database}: not a qa index (a SQLite database of something else)")
    return stored


def _database_error(folder: Path, error: sqlite3.DatabaseError) -> UserError:
    """The one-line message for an error of the database in ``folder``: busy or changed meanwhile (another
    qa index is writing it), or unusable (damaged: delete and build again)."""
    if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
        return UserError(f"{folder}: the index is busy (another qa index is updating it); try again when it is done")
    if isinstance(error, sqlite3.IntegrityError):  # a document another update wrote since this one looked
        return UserError(f"{folder}: the index changed while this update ran (another qa index at the same time?); "
                         "run it again when that one is done")
    return UserError(f"{folder}: the index cannot be used ({error}); if it is damaged, delete the folder and "
                     f"build it again with qa index PATH... --output {folder}")


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed when the block ends, rolled back on any exception (Ctrl-C too)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


@contextmanager
def _index_errors(folder: Path) -> Iterator[None]:
    """The database's and the file system's errors about the index in ``folder`` (a damaged file, a full
    disk, a read-only folder) as one-line ``UserError``s; a programming error stays what it is."""
    try:
        yield
    except sqlite3.ProgrammingError:
        raise
    except sqlite3.DatabaseError as error:
        raise _database_error(folder, error) from None
    except OSError as error:
        raise UserError(f"{folder}: {error.strerror or error}") from None


def _open_for_update(folder: Path, settings: dict[str, str]) -> tuple[sqlite3.Connection, Path]:
    """A connection to the folder's index, created (folder too) when missing and recreated empty when
    built with other settings; a non-empty folder without an index is refused, never written into."""
    database = folder / DATABASE
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: not a folder (the index is written into a folder)")
    if folder.is_dir() and not database.exists() and any(folder.iterdir()):
        raise UserError(f"{folder}: the folder holds other files and no index; choose a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    connection = _connect(database)
    stored = _stored_settings(connection, database)
    if stored is not None and stored != settings:  # other windows, tokenizer or version: start again
        connection.close()
        for name in (DATABASE, *(DATABASE + suffix for suffix in _JOURNAL_FILES)):
            (folder / name).unlink(missing_ok=True)
        connection, stored = _connect(database), None
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    if stored is None:
        with _transaction(connection):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                connection.execute(statement)
            connection.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", settings.items())
    return connection, database


def _digest(file: Path) -> tuple[str, int] | None:
    """SHA-256 and size of a regular file's bytes, read in a stream; None where ``read_document`` is
    left to say why the file cannot be read (a folder, a device, too large, unreadable)."""
    try:
        status = file.stat()
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_FILE_BYTES:
            return None
        with file.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest(), status.st_size
    except OSError:
        return None


def _windows(text: str, size: int, stride: int) -> Iterator[tuple[int, int, str]]:
    """Each window's ``[start, stop)`` characters and its FTS text (its content terms), cut where
    ``qa.windows.window_starts`` cuts the text's tokens. The text is tokenized piece by piece and only
    the tokens from the last window's start on are kept, so memory holds a piece and a window however
    long the document (all of a 64 MB file's tokens would take about 4 GB)."""
    starts: list[int] = []  # the kept tokens' first characters, ends and terms ("" for none), from token ``first`` on
    ends: list[int] = []
    terms: list[str] = []
    first = total = following = 0  # ``following``: the first token of the next full window
    for tokens in tokenize_in_pieces(text):
        starts += tokens.starts
        ends += tokens.ends
        terms += [content_term(lemma) or "" for lemma in tokens.lemmas]
        total += len(tokens)
        while following + size <= total:
            yield _window(starts, ends, terms, following - first, size)
            following += stride
        drop = max(following - stride, 0) - first  # a last, shorter-stride window may start after the last full one
        del starts[:drop], ends[:drop], terms[:drop]
        first += drop
    last = following - stride  # the last full window's first token (negative: none)
    if total and (last < 0 or last + size < total):
        tail = max(total - size, 0)
        yield _window(starts, ends, terms, tail - first, total - tail)


def _window(starts: list[int], ends: list[int], terms: list[str], at: int, length: int) -> tuple[int, int, str]:
    """The window of ``length`` kept tokens from ``at``: its first and end characters and its terms."""
    return starts[at], ends[at + length - 1], " ".join(term for term in terms[at: at + length] if term)


def _delete_document(connection: sqlite3.Connection, document: int) -> None:
    """Remove a document with its windows and their terms (inside the caller's transaction)."""
    connection.execute("DELETE FROM window_terms WHERE rowid IN (SELECT id FROM windows WHERE document = ?)",
                       (document,))
    connection.execute("DELETE FROM windows WHERE document = ?", (document,))
    connection.execute("DELETE FROM documents WHERE id = ?", (document,))


def _write_document(connection: sqlite3.Connection, file: Path, old: tuple[int, str] | None,
                    window_tokens: int, window_stride: int) -> str:
    """Index ``file`` unless its digest matches ``old`` (id, sha256): 'unchanged', 'added' or 'changed';
    ``DocumentError`` for an unreadable file. The old rows go and the new come in one transaction."""
    digest = _digest(file)
    if old is not None and digest is not None and digest[0] == old[1]:
        return "unchanged"
    document = read_document(file)
    sha256, size = digest or ("", 0)  # hashing failed yet reading worked (a race): the next update reads it again
    sections = json.dumps([[s.start, s.page, s.heading] for s in document.sections], ensure_ascii=False)
    with _transaction(connection):
        if old is not None:
            _delete_document(connection, old[0])
        document_id = connection.execute(
            "INSERT INTO documents(path, sha256, size, text, sections) VALUES (?, ?, ?, ?, ?)",
            (str(file), sha256, size, document.text, sections)).lastrowid
        for start, stop, terms in _windows(document.text, window_tokens, window_stride):
            window_id = connection.execute("INSERT INTO windows(document, start, stop) VALUES (?, ?, ?)",
                                           (document_id, start, stop)).lastrowid
            connection.execute("INSERT INTO window_terms(rowid, terms) VALUES (?, ?)", (window_id, terms))
    return "added" if old is None else "changed"


def _outside(folder: Path, found: list[Path],
             skipped: list[tuple[str, str]]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files found and skipped, less the index's own files (an index kept inside the indexed folder)."""
    inside = os.path.realpath(folder) + os.sep

    def keep(path: str | Path) -> bool:
        return not os.path.realpath(path).startswith(inside)

    return [file for file in found if keep(file)], [(path, why) for path, why in skipped if keep(path)]


def _disk_bytes(database: Path) -> int:
    """The size on disk of the database and any journal beside it."""
    paths = [database, *(database.with_name(database.name + suffix) for suffix in _JOURNAL_FILES)]
    return sum(path.stat().st_size for path in paths if path.exists())


def build_index(paths: list[str | Path], folder: str | Path, progress: Callable[[int, int], None] | None = None,
                window_tokens: int = 200, window_stride: int = 150) -> IndexUpdate:
    """Make the index in ``folder`` hold exactly the documents under ``paths``, reading only new and
    changed files; an index built with other windows, tokenizer or version is rebuilt from scratch.
    ``progress(done, total)`` follows each file; an interruption keeps every document already written."""
    check_windows(window_tokens, window_stride)
    check_paths(paths)
    folder = Path(folder)
    with _index_errors(folder):
        return _update(folder, paths, progress, window_tokens, window_stride)


def check_paths(paths: list[str | Path]) -> None:
    """A ``UserError`` naming the first of ``paths`` that does not exist: a mistyped path would otherwise
    empty the index of everything stored under it."""
    missing = [str(path) for path in paths if not os.path.lexists(path)]
    if missing:
        raise UserError(f"{missing[0]}: no such file or folder; the index was not changed")


def _update(folder: Path, paths: list[str | Path], progress: Callable[[int, int], None] | None,
            window_tokens: int, window_stride: int) -> IndexUpdate:
    """``build_index``'s work once its arguments are checked. Files are stored by absolute path, so that
    the same folder given by a relative or an absolute path is the same documents, and citations hold from any
    folder (a symbolic link is not resolved: through one, the files are new paths)."""
    connection, database = _open_for_update(folder, _settings(window_tokens, window_stride))
    try:
        found, skipped = _outside(folder, *find_documents(paths))
        files = [Path(os.path.abspath(file)) for file in found]
        stored = {path: (id_, sha) for id_, path, sha in connection.execute("SELECT id, path, sha256 FROM documents")}
        counts = {"added": 0, "changed": 0, "unchanged": 0}
        kept: set[str] = set()
        for done, file in enumerate(files, start=1):
            try:
                counts[_write_document(connection, file, stored.get(str(file)), window_tokens, window_stride)] += 1
                kept.add(str(file))
            except DocumentError as error:
                skipped.append((str(file), str(error).removeprefix(f"{file}: ")))
            if progress is not None:
                progress(done, len(files))
        if stored and not kept:  # an empty or unmounted folder, or every file unreadable: keep what is there
            raise UserError(f"{', '.join(map(str, paths))}: no readable document found; the index of "
                            f"{len(stored)} documents was not changed (delete the folder to empty it)")
        gone = [id_ for path, (id_, _) in stored.items() if path not in kept]
        with _transaction(connection):
            for document in gone:
                _delete_document(connection, document)
        totals = [connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("documents", "windows")]
        _end_wal(connection)
    finally:
        connection.close()
    return IndexUpdate(counts["added"], counts["changed"], len(gone), counts["unchanged"], skipped,
                       totals[0], totals[1], _disk_bytes(database))


def _end_wal(connection: sqlite3.Connection) -> None:
    """Back to the rollback journal (the WAL folded into the file), unless a reader holds the index open
    (then the WAL stays, which is just as correct)."""
    try:
        connection.execute("PRAGMA busy_timeout = 0")
        connection.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.OperationalError:
        pass


def _rebased(sections: list[list], start: int, length: int) -> list[Section]:
    """A document's sections (JSON rows) as seen from its window ``[start, start + length)``."""
    first = max(bisect.bisect_right([row[0] for row in sections], start) - 1, 0)
    _, page, heading = sections[first]
    inside = [Section(s - start, p, h) for s, p, h in sections[first + 1:] if s < start + length]
    return [Section(0, page, heading), *inside]


def _match_query(question: str) -> str | None:
    """The FTS5 query for a question: its distinct content terms OR'ed, each quoted so that none is read
    as FTS syntax; None when it has no content terms."""
    terms = dict.fromkeys(content_terms(tokenize_many([question])[0]))
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms) or None


def joined(hits: list[Hit]) -> list[Hit]:
    """``hits`` with the overlapping or touching windows of each document joined into one stretch (best
    rank first, the joined one where its best part ranked), so no text is read twice."""
    stretches: list[Hit] = []
    for hit in hits:
        for k, other in enumerate(stretches):
            if other.path == hit.path and hit.start <= other.start + len(other.text) and other.start <= hit.start + len(hit.text):
                stretches[k] = _union(other, hit)
                break
        else:
            stretches.append(hit)
    return stretches if len(stretches) == len(hits) else joined(stretches)


def _union(one: Hit, other: Hit) -> Hit:
    """One stretch covering two overlapping windows of a document, with both windows' sections."""
    first, second = sorted((one, other), key=lambda hit: hit.start)
    shift, length = second.start - first.start, len(first.text)  # second's offsets into the stretch; first's end
    text = first.text + second.text[length - shift :]
    later = [Section(s.start + shift, s.page, s.heading) for s in second.sections if s.start + shift >= length]
    return Hit(first.path, text, first.start, [*first.sections, *later], max(one.score, other.score))


class Index:
    """An index built by ``build_index``, opened to search: ``search`` gives the best windows of all documents."""

    def __init__(self, connection: sqlite3.Connection, folder: Path, settings: dict[str, str]):
        self._connection = connection
        self.folder = folder
        self.window_tokens = int(settings["window_tokens"])
        self.window_stride = int(settings["window_stride"])

    @classmethod
    def open(cls, folder: str | Path, window_tokens: int | None = None, window_stride: int | None = None) -> Index:
        """The index in ``folder``; ``UserError`` when there is none, or it was built with another version or
        tokenizer, or with windows other than those given (None: any; they are then read from the index)."""
        folder = Path(folder)
        database = folder / DATABASE
        again = f"run qa index PATH... --output {folder} again"
        if not database.is_file():
            raise UserError(f"{folder}: no index here (build one with qa index PATH... --output {folder})")
        with _index_errors(folder):
            connection = _connect(database)
        try:
            stored = _stored_settings(connection, database) or {}
            if stored.get("version") != str(INDEX_VERSION):
                raise UserError(f"{folder}: the index is version {stored.get('version')}, this is "
                                f"version {INDEX_VERSION}; {again}")
            if stored.get("tokenizer") != _tokenizer_key():
                raise UserError(f"{folder}: the index was built with another tokenizer (spaCy or qa changed); {again}")
            if stored.get("reading") != reading_fingerprint():
                raise UserError(f"{folder}: the index was built by another version of the document readers; {again}")
            for name, wanted in (("window_tokens", window_tokens), ("window_stride", window_stride)):
                if wanted is not None and stored[name] != str(wanted):
                    raise UserError(f"{folder}: the index was built with {name} {stored[name]}, not {wanted}; "
                                    f"{again} with these windows")
            connection.execute("PRAGMA query_only = ON")
            return cls(connection, folder, stored)
        except BaseException:
            connection.close()
            raise

    def search(self, question: str, k: int) -> list[Hit]:
        """The ``k`` windows of all documents that best match the question's content terms (BM25), best
        first; [] when the question has none."""
        query = _match_query(question)
        if query is None or k < 1:
            return []
        with _index_errors(self.folder):
            rows = self._connection.execute(_SEARCH, (query, k)).fetchall()
        return [Hit(path, text, start, _rebased(json.loads(sections), start, len(text)), score)
                for path, text, start, sections, score in rows]

    def __len__(self) -> int:
        with _index_errors(self.folder):
            return self._connection.execute("SELECT count(*) FROM documents").fetchone()[0]

    def __contains__(self, path: str | Path) -> bool:
        """Whether the file ``path`` (any spelling that resolves to its absolute path) is indexed."""
        with _index_errors(self.folder):
            return self._connection.execute("SELECT 1 FROM documents WHERE path = ?",
                                            (os.path.abspath(path),)).fetchone() is not None

    def close(self) -> None:
        """Close the database."""
        self._connection.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
