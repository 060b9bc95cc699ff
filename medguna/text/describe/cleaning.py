"""Turn raw LLM completions into a clean list of description sentences.

The reference's own description files hold debris: numbering, bullets, echoed prompts,
"Here are ...:" preambles, sentences cut off by the token limit, one-word lines and repeats.
Each rule below removes one kind; `clean_completions` applies them all, then drops duplicates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# "1.", "2)", "(3)", "a)", "-", "*", "•", "–" and markdown headings at the start of a line;
# the marker must be followed by a space so that "2.5 mm" keeps its number.
_BULLET = re.compile(r"^\s*(?:[-*•·–—>#]+|\(?\d{1,3}[.):]|\(?[a-zA-Z][)])(?=\s|$)\s*")
_ANSWER_LABEL = re.compile(r"^(?:a|answer|description)\s*:\s*", re.IGNORECASE)
_QUESTION_LABEL = re.compile(r"^(?:q|question|prompt)\s*:", re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_ABBREVIATIONS = ("e.g.", "i.e.", "vs.", "dr.", "fig.", "approx.", "no.")
_META_OPENINGS = (
    "sure", "certainly", "here are", "here is", "here's", "as an ai", "i'm sorry",
    "i am sorry", "i cannot", "i can't",
)
# An unterminated sentence ending in one of these words was cut mid-thought.
_DANGLING_WORDS = frozenset({
    "a", "an", "the", "of", "and", "or", "with", "by", "to", "in", "on", "at", "as", "for",
    "from", "that", "which", "would", "will", "may", "might", "can", "could", "is", "are",
    "be", "such", "show", "shows", "include", "includes", "typically",
})
_QUOTES = "\"'“”‘’`"
_TERMINAL = ".!"


@dataclass(frozen=True)
class CleaningRules:
    """Tunable thresholds; sentences with fewer than `min_words` words are dropped."""

    min_words: int = 3


def duplicate_key(sentence: str) -> str:
    """Case, punctuation and spacing removed: sentences with equal keys are duplicates."""
    folded = unicodedata.normalize("NFKC", sentence).casefold()
    return re.sub(r"[\W_]+", "", folded)


def split_sentences(line: str) -> list[str]:
    """Split at ., ! or ? followed by a capital, digit or quote, but not after e.g./i.e./vs."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_BREAK.finditer(line):
        before = line[start:match.start()]
        if before.casefold().endswith(_ABBREVIATIONS):
            continue
        pieces.append(before)
        start = match.end()
    pieces.append(line[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def _strip_decoration(line: str) -> str:
    line = line.replace("**", "").replace("__", "").strip()
    previous = None
    while previous != line:  # "1. - text" carries two markers
        previous = line
        line = _BULLET.sub("", line, count=1).strip()
    return _ANSWER_LABEL.sub("", line).strip()


def _remove_prompt_echo(text: str, prompt: str) -> str:
    stripped = text.lstrip()
    prompt = prompt.strip()
    if prompt and stripped.startswith(prompt):
        return stripped[len(prompt):]
    return text


def _is_kept(sentence: str, prompt_keys: set[str], rules: CleaningRules) -> bool:
    if not sentence or sentence.endswith(("?", ":")):
        return False  # a question or heading is prompt debris, not a description
    if not (sentence[0].isupper() or sentence[0].isdigit()):
        return False  # starts mid-sentence: a fragment left by a line break or a cut
    if sentence.casefold().startswith(_META_OPENINGS):
        return False  # chat preamble or refusal
    words = sentence.split()
    if not sentence.endswith(tuple(_TERMINAL)) and words[-1].casefold() in _DANGLING_WORDS:
        return False  # "... would typically show": a fragment
    if duplicate_key(sentence) in prompt_keys:
        return False  # leftover prompt text
    return len(words) >= rules.min_words


def clean_completion(
    text: str, prompt: str, truncated: bool = False, rules: CleaningRules = CleaningRules()
) -> list[str]:
    """Sentences of one completion that look like descriptions, in order (duplicates kept).

    `truncated` (finish_reason "length") marks the final unterminated sentence as a fragment.
    """
    prompt_keys = {duplicate_key(piece) for piece in split_sentences(prompt.strip())}
    lines = _remove_prompt_echo(text, prompt).splitlines()
    kept: list[str] = []
    for line_number, raw_line in enumerate(lines):
        line = raw_line.strip()
        if not line or _QUESTION_LABEL.match(line):
            continue
        sentences = split_sentences(_strip_decoration(line))
        is_last_line = all(not later.strip() for later in lines[line_number + 1:])
        for position, sentence in enumerate(sentences):
            sentence = " ".join(sentence.strip(_QUOTES + " ").split())
            is_tail = is_last_line and position == len(sentences) - 1
            if truncated and is_tail and not sentence.endswith(tuple(_TERMINAL)):
                continue  # cut off by the token limit
            if _is_kept(sentence, prompt_keys, rules):
                kept.append(sentence)
    return kept


def raw_sentence_count(text: str) -> int:
    """Sentences in an uncleaned completion (bullets removed so "1." is not one): the 'before'."""
    return sum(len(split_sentences(_strip_decoration(line))) for line in text.splitlines()
               if line.strip())


def deduplicate(sentences: Iterable[str]) -> list[str]:
    """First occurrence of each sentence, comparing case- and punctuation-free keys."""
    seen: set[str] = set()
    unique: list[str] = []
    for sentence in sentences:
        key = duplicate_key(sentence)
        if key and key not in seen:
            seen.add(key)
            unique.append(sentence)
    return unique
