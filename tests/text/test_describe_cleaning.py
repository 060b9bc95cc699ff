"""Cleaning rules on hand-written LLM debris, with the exact sentences expected to survive."""

from medguna.text.describe.cleaning import (
    CleaningRules,
    clean_completion,
    deduplicate,
    duplicate_key,
    split_sentences,
)

PROMPT = (
    "How does a radiologist recognise pulmonary tuberculosis on a chest X-ray? "
    "Answer in several short sentences."
)

DEBRIS = (
    PROMPT + "\n"
    "Sure! Here are some descriptions:\n"
    "### Findings\n"
    "1. Cavities are seen in the upper lobes.\n"
    "2) **Patchy consolidation** appears in the apical segments. Hilar lymph nodes may be "
    "enlarged.\n"
    "- Nodules measuring 2.5 mm are scattered in both lungs\n"
    "• CAVITIES are seen in the upper lobes!\n"
    "Tuberculosis.\n"
    "Pleural effusion.\n"
    "\n"
    "Q: What else?\n"
    "A: Fibrotic scarring e.g. Ghon complex may be visible.\n"
    "and the trachea may be deviated.\n"
    "A chest X-ray of a patient with tuberculosis would typically show\n"
    "Answer in several short sentences.\n"
    '"Miliary pattern shows tiny nodules throughout the lungs."\n'
    "Is the heart enlarged?\n"
    "The costophrenic angles may be blunted by fluid"
)

SURVIVORS = [
    "Cavities are seen in the upper lobes.",
    "Patchy consolidation appears in the apical segments.",
    "Hilar lymph nodes may be enlarged.",
    "Nodules measuring 2.5 mm are scattered in both lungs",
    "CAVITIES are seen in the upper lobes!",
    "Fibrotic scarring e.g. Ghon complex may be visible.",
    "Miliary pattern shows tiny nodules throughout the lungs.",
]


def test_debris_is_removed_and_truncated_tail_dropped() -> None:
    assert clean_completion(DEBRIS, PROMPT, truncated=True) == SURVIVORS


def test_unterminated_tail_of_a_finished_answer_is_kept() -> None:
    # finish_reason "stop": the last line is a complete bullet without a full stop.
    assert clean_completion(DEBRIS, PROMPT, truncated=False) == SURVIVORS + [
        "The costophrenic angles may be blunted by fluid"
    ]


def test_near_duplicates_collapse_to_first_occurrence() -> None:
    assert deduplicate(SURVIVORS) == [s for s in SURVIVORS if not s.startswith("CAVITIES")]
    assert deduplicate(["The lungs are clear.", "the lungs  are clear", "The lungs-are CLEAR!",
                        "The lungs are not clear."]) == [
        "The lungs are clear.", "The lungs are not clear."]


def test_min_words_threshold() -> None:
    text = "Pleural effusion.\nTuberculosis.\nSmall pleural effusion."
    assert clean_completion(text, PROMPT, rules=CleaningRules(min_words=2)) == [
        "Pleural effusion.", "Small pleural effusion."]
    assert clean_completion(text, PROMPT) == ["Small pleural effusion."]


def test_split_sentences_respects_abbreviations_and_decimals() -> None:
    assert split_sentences("Dr. Smith saw it. Lesions e.g. Bowen's are 2.5 mm wide. The end!") == [
        "Dr. Smith saw it.", "Lesions e.g. Bowen's are 2.5 mm wide.", "The end!"]


def test_duplicate_key_ignores_case_punctuation_and_spacing() -> None:
    assert duplicate_key("The lungs—are  CLEAR!") == "thelungsareclear"
    assert duplicate_key("...") == ""


def test_empty_and_whitespace_completions_give_nothing() -> None:
    assert clean_completion("", PROMPT) == []
    assert clean_completion(" \n\n  \n", PROMPT) == []
    assert clean_completion(PROMPT, PROMPT) == []
