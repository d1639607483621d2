"""``qa chat`` with the shipped model, through a pseudo-terminal and through a pipe."""
import re
import subprocess
import sys

import pexpect
import pytest

from conftest import ROLLO

pytestmark = pytest.mark.slow

NORMANS = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were led by Rollo, a Viking chieftain.")
OXYGEN = "Oxygen is a chemical element. It was discovered by Carl Wilhelm Scheele in Uppsala in 1773."


def _plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_interactive_session_through_a_terminal():
    child = pexpect.spawn(sys.executable, ["-m", "qa", "chat"], encoding="utf-8", timeout=120,
                          dimensions=(50, 120), env={"TERM": "xterm", "PATH": "/usr/bin:/bin"})
    child.expect("paste the passage")
    child.sendline(NORMANS)
    child.sendline(".")
    child.expect("passage loaded")
    child.expect("question> ")
    child.sendline("Who led the Normans?")
    child.expect(r"Answer: (.+?) {3}score")  # the answer line itself, not the passage, which always holds it
    assert _plain(child.match.group(1)) in ROLLO
    child.expect("question> ")
    child.sendline("In what country is Normandy?")
    child.expect(r"Answer: (.+?) {3}score")
    assert _plain(child.match.group(1)) == "France"
    child.expect("question> ")
    child.sendline(":passage")
    child.sendline(OXYGEN)
    child.sendline(".")
    child.expect("passage loaded")
    child.expect("question> ")
    child.sendline("Who discovered oxygen?")
    child.expect(r"Answer: (.+?) {3}score")
    assert _plain(child.match.group(1)) == "Carl Wilhelm Scheele"
    child.expect("question> ")
    child.sendline(":quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_piped_input_gives_one_result_per_question_and_no_prompts():
    # a passage of two paragraphs: the empty line between them belongs to it; "." ends it
    script = f"{NORMANS}\n\n{OXYGEN}\n.\nWho led the Normans?\nWho discovered oxygen?\n"
    result = subprocess.run([sys.executable, "-m", "qa", "chat"], input=script, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    rollo, scheele = re.findall(r"^Answer: (.+?) {3}score", result.stdout, re.M)
    assert rollo in ROLLO and scheele == "Carl Wilhelm Scheele"
    assert "question>" not in result.stdout and "paste the passage" not in result.stdout


def test_bad_lines_are_reported_on_stderr_and_the_chat_goes_on():
    result = subprocess.run([sys.executable, "-m", "qa", "chat"], input="", capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("qa: error: ") and len(result.stderr.strip().splitlines()) == 1
    script = f"{NORMANS}\n.\n:file /no/such/file.txt\nWho led the Normans?\n"
    result = subprocess.run([sys.executable, "-m", "qa", "chat"], input=script, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0
    assert result.stderr == "qa: error: /no/such/file.txt: no such file or folder\n"
    assert re.findall(r"^Answer: (.+?) {3}score", result.stdout, re.M)[0] in ROLLO
