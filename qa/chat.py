"""``qa chat``: load a passage or documents, then ask question after question about them.

Lines starting with ``:`` are commands (``:help`` lists them); any other line is a question.
With a terminal, input has line editing and history (readline) and a prompt; with piped input
there are no prompts and exactly one result per question. A line's ``UserError`` is printed and
the session goes on; any other exception is a bug and ends it with a traceback.
"""
from __future__ import annotations

import sys

from rich.console import Console

from qa.context import Context
from qa.errors import UserError
from qa.inputs import MAX_PASSAGE_CHARS
from qa.render import ATTENTION_CHOICES, TerminalConsole, export_html, render, visible

PASSAGE_END = "."  # the line that ends a pasted passage
HELP = f"""commands:
  :help                      this list
  :passage                   paste a new passage, empty lines and all; end it with a line holding
                             only "." (or end of input)
  :file PATH                 read the documents of PATH (a file or a folder: PDF, HTML, DOCX, Markdown, text)
  :show                      print the current passage, or list the documents
  :attention [{'|'.join(ATTENTION_CHOICES)}]   choose the attention view (no argument: the next one)
  :html FILE                 write the last answer's rendering, with its colours, as an HTML page
  :force                     answer even where the passage does not seem to (again: abstain again)
  :explain                   also show how each answer was found (again: the short view again)
  :quit                      leave (also Ctrl-D)
anything else is a question about the current passage or documents"""


class Chat:
    """One interactive session over a model; holds the current passage or documents, attention view and last answer."""

    def __init__(self, model: str | None, context: Context | None, attention: str | None = None, force: bool = False,
                 bfloat16: bool | None = None, abstain_above: float | None = None, explain: bool = False):
        from qa.reader import Reader

        if sys.stdin is None:
            raise UserError("standard input is closed: the chat reads its questions there")
        self.reader = Reader.load(model, bfloat16=bfloat16, abstain_above=abstain_above)
        self.context = context
        self.explain = explain  # also show how each answer was found (qa.render)
        self.attention = attention or self.reader.attention_view  # None: the model's own view
        self.force = force  # answer even when the model says the passage does not
        self.interactive = sys.stdin.isatty()
        self.console = TerminalConsole()
        self.errors = Console(stderr=True)
        self.last: tuple[str, str, object] | None = None  # (question, text, prediction) of the last question

    def _input(self, prompt: str) -> str | None:
        """One line without its line end, None at the end of input. Piped input is read at most
        ``MAX_PASSAGE_CHARS`` + 1 characters at a time, so that one endless line cannot fill the memory."""
        if not self.interactive:
            line = sys.stdin.readline(MAX_PASSAGE_CHARS + 1)
            if len(line) > MAX_PASSAGE_CHARS and not line.endswith("\n"):  # the rest of this line is let go
                while (rest := sys.stdin.readline(MAX_PASSAGE_CHARS + 1)) and not rest.endswith("\n"):
                    pass
            return line.removesuffix("\n") if line else None
        try:
            return input(prompt)
        except EOFError:
            return None

    def _read_passage(self) -> str | None:
        """Lines up to a line holding only "." (or end of input) as the new passage: a pasted
        document keeps its empty lines."""
        if self.interactive:
            self.console.print('[dim]paste the passage, then a line with only "." on it:[/]')
        lines, size = [], 0
        while (line := self._input("")) is not None and line.strip() != PASSAGE_END:
            size += len(line) + 1
            if size <= MAX_PASSAGE_CHARS + 1:  # beyond, the rest of the passage is read to its end but not kept
                lines.append(line)
        if size > MAX_PASSAGE_CHARS + 1:
            raise UserError(f"the passage has over {MAX_PASSAGE_CHARS:,} characters; the limit is {MAX_PASSAGE_CHARS:,}")
        text = "\n".join(lines).strip("\n")
        return text if text.strip() else None

    def _set_passage(self, text: str | None) -> None:
        if text is None:
            raise UserError("no passage given")
        self.context = Context.of_passage(text)
        if self.interactive:
            self.console.print(f"[dim]passage loaded: {len(self.context.text.split()):,} words[/]")

    def _set_documents(self, path: str) -> None:
        """Read the documents of ``path``, warning of each file skipped."""
        self.context = Context.of_paths([path])
        for warning in self.context.warnings():
            self.console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
        self.console.print(self.context.described(), style="dim", markup=False, highlight=False)

    def _command(self, line: str) -> bool:
        """Run one ``:command``; returns False to quit."""
        name, _, argument = line[1:].strip().partition(" ")
        argument = argument.strip()
        if name in ("quit", "q", "exit"):
            return False
        if name == "help":
            self.console.print(HELP, markup=False, highlight=False)
        elif name == "passage":
            self._set_passage(self._read_passage())
        elif name == "file":
            if not argument:
                raise UserError(":file needs a PATH")
            self._set_documents(argument)
        elif name == "show":
            self.console.print(self._shown(), markup=False, highlight=False)
        elif name == "attention":
            if argument and argument not in ATTENTION_CHOICES:
                raise UserError(f"unknown attention view {argument!r}; choose {', '.join(ATTENTION_CHOICES)}")
            following = ATTENTION_CHOICES[(ATTENTION_CHOICES.index(self.attention) + 1) % len(ATTENTION_CHOICES)]
            self.attention = argument or following
            self.console.print(f"attention view: {self.attention}")
        elif name == "explain":
            self.explain = not self.explain
            self.console.print("answers come with how they were found" if self.explain else "answers are shown short")
        elif name == "force":
            self.force = not self.force
            self.console.print("answers are forced" if self.force else "the reader may abstain")
        elif name == "html":
            if not argument:
                raise UserError(":html needs a FILE")
            if self.last is None:
                raise UserError("no answer to write yet: ask a question first")
            self.context.refuse_overwriting(argument)
            export_html(argument, *self.last, self.console.width, self.explain, self.context.documents)
            self.console.print(f"wrote {argument}", markup=False, highlight=False)
        else:
            raise UserError(f"unknown command :{name} (:help lists the commands)")
        return True

    def _shown(self) -> str:
        """The current passage, or the list of documents."""
        if self.context is None:
            return "(no passage)"
        if self.context.index is not None:
            return f"the index in {self.context.index.folder}: {self.context.documents:,} documents"
        if self.context.collection is None:
            return visible(self.context.text)
        return "\n".join(visible(d.path) for d in self.context.collection.documents)

    def _ask(self, question: str) -> None:
        if self.context is None:
            raise UserError("no passage yet: use :passage or :file PATH")
        text, prediction = self.context.predict(self.reader, question, with_attention=self.attention != "none",
                                                attention_view=self.attention, force=self.force)
        self.last = (question, text, prediction)
        render(self.console, question, text, prediction, self.explain, self.context.documents)

    def run(self) -> int:
        """Read the passage if none was given, then answer line by line until end of input or :quit; a bad
        line is reported and the chat goes on. 2 when no passage could be read, else 0."""
        if self.interactive:
            import readline  # noqa: F401  (line editing and history for input())

            self.console.print("[bold]qa chat[/] — ask questions about a passage; :help lists commands")
        if self.context is None:
            try:
                self._set_passage(self._read_passage())
            except UserError as error:
                self._report(error)
                return 2
        while (line := self._input("question> ")) is not None:
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith(":"):
                    if not self._command(line):
                        break
                else:
                    self._ask(line)
            except UserError as error:
                self._report(error)
        return 0

    def _report(self, error: UserError) -> None:
        """One line on stderr, as every command reports bad input."""
        self.errors.print(f"qa: error: {error}", style="red", markup=False, highlight=False,
                          soft_wrap=True)
