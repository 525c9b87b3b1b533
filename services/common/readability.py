"""Reading grade of notice text (New Zealand's Plain Language Act 2022 asks for clear, concise
public communication): the Flesch-Kincaid grade level, with syllables from pyphen's
hyphenation dictionary (the method textstat uses for words it has no pronunciation for; textstat
itself is not used: its releases need pkg_resources or download NLTK data at run time).

FK grade = 0.39 * words/sentence + 11.8 * syllables/word - 15.59. A list item or a line on its
own is a sentence: notices are mostly short lines, and joining them would overstate the grade.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pyphen

# The grade every bundled template and every coordinator free-text field is held to: about a
# 13-14 year old's reading (US grade 8), the usual plain-language target for the public.
MAX_GRADE = 8.0

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[A-Za-zÀ-ÿĀ-ſ]+(?:['’][A-Za-z]+)?")


@functools.cache
def _dictionary() -> pyphen.Pyphen:
    return pyphen.Pyphen(lang="en_GB")


def syllables(word: str) -> int:
    return len(_dictionary().positions(word.lower())) + 1


@dataclass(frozen=True)
class Readability:
    grade: float
    words: int
    sentences: int


def measure(text: str) -> Readability:
    sentences = [s for s in _SENTENCE_END.split(text) if _WORD.search(s)]
    words = _WORD.findall(text)
    if not words:
        return Readability(0.0, 0, 0)
    syll = sum(syllables(w) for w in words)
    grade = 0.39 * len(words) / len(sentences) + 11.8 * syll / len(words) - 15.59
    return Readability(round(grade, 1), len(words), len(sentences))


@dataclass(frozen=True)
class Warning:
    field: str
    grade: float
    max_grade: float

    @property
    def message(self) -> str:
        return (f"{self.field} reads at grade {self.grade} (plain language: at most "
                f"{self.max_grade}); use shorter sentences and everyday words")


def check_fields(fields: dict[str, str], max_grade: float = MAX_GRADE,
                 min_words: int = 12) -> list[Warning]:
    """A warning for each field that reads above `max_grade`. Texts shorter than `min_words`
    are skipped: a grade of a few words says little."""
    found = []
    for name, text in fields.items():
        r = measure(text)
        if r.words >= min_words and r.grade > max_grade:
            found.append(Warning(name, r.grade, max_grade))
    return found
