"""The README's tour as data: its fenced blocks, and the programs its shell blocks run.

tests/integration/test_readme.py runs the tour's ```sh blocks as a user pasting them would;
tests/unit/test_readme_tools.py checks that scripts/install-system-deps.sh installs every
program they use. Both read the README through this module, so they agree on what "the tour" is:
the blocks between the `## A tour` heading and the next `## ` heading.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TOUR_HEADING = "## A tour"

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^(#{2,3}) (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One fenced block: its language tag, its text, and the heading it sits under."""

    lang: str
    text: str
    section: str
    in_tour: bool


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of `markdown`, in order."""
    headings = [(m.start(), m.group(1), m.group(2).strip()) for m in _HEADING.finditer(markdown)]
    found = []
    for fence in _FENCE.finditer(markdown):
        above = [h for h in headings if h[0] < fence.start()]
        section = above[-1][2] if above else ""
        top = [h for h in above if h[1] == "##"]
        in_tour = bool(top) and f"## {top[-1][2]}" == TOUR_HEADING
        found.append(Block(fence.group("lang"), fence.group("body"), section, in_tour))
    return found


def tour_shell_blocks(markdown: str) -> list[Block]:
    return [b for b in blocks(markdown) if b.in_tour and b.lang == "sh"]


# Words after which the next word is a command again.
_KEYWORDS = frozenset({"until", "while", "do", "then", "else", "if", "!", "{"})
_NOT_PROGRAMS = frozenset({"done", "fi", "}"})
_SEPARATOR_CHARS = frozenset("|&;()\n")


def programs(script: str) -> list[str]:
    """The programs a shell snippet runs, in order: the first word of every simple command,
    looking through `ip netns exec NAME CMD` (both `ip` and CMD count) and into the script of
    `sh -c '...'`. Enough shell for the README, not a parser of all of it."""
    lexer = shlex.shlex(_without_comments(script), posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace = " \t\r"  # a newline ends a command
    lexer.commenters = ""  # shlex would swallow the newline that ends a comment
    lexer.whitespace_split = True
    tokens = list(lexer)
    found: list[str] = []
    at_command = True
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if set(token) <= _SEPARATOR_CHARS:
            at_command = True
        elif "<" in token or ">" in token:
            i += 1  # the redirection's target
        elif at_command and token in _KEYWORDS:
            pass
        elif at_command:
            at_command = False
            if token in _NOT_PROGRAMS:
                pass
            elif token == "ip" and tokens[i + 1:i + 3] == ["netns", "exec"]:
                found.append("ip")
                i += 3  # `ip netns exec NAME`: what follows NAME is a command of its own
                at_command = True
            elif token == "sh" and i + 2 < len(tokens) and tokens[i + 1] == "-c":
                found.append("sh")
                found += programs(tokens[i + 2])
                i += 2
            else:
                found.append(token)
        i += 1
    return found


def _without_comments(script: str) -> str:
    """`script` less its `# ...` comments (a `#` that starts a word, outside quotes)."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(script):
        char = script[i]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or script[i - 1].isspace()):
            end = script.find("\n", i)
            i = len(script) if end < 0 else end
            continue
        out.append(char)
        i += 1
    return "".join(out)
