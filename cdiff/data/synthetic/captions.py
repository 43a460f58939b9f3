"""Captions in the CelebA-Dialog register: one sentence per attribute key, and their join."""

from __future__ import annotations

from typing import Any

import numpy as np

_SUBJECTS = {
    "man": ("He", "He", "This man", "This guy", "The gentleman", "This gentleman", "The man"),
    "woman": ("She", "She", "This woman", "This lady", "The woman", "This female", "The lady"),
}
_PRONOUNS = {"man": ("he", "his"), "woman": ("she", "her")}
_AGE_PHRASES = (
    (
        "{S} is a teen.",
        "{S} is a teenager.",
        "{S} looks very young, still a teenager.",
        "{S} is in {his} teens.",
    ),
    ("{S} is a young adult.", "{S} is in {his} twenties.", "{S} looks like a young adult in {his} twenties."),
    (
        "{S} is in {his} thirties.",
        "{S} looks like {he} is in {his} thirties.",
        "{S} is about thirty-five years old.",
    ),
    ("{S} is in {his} forties.", "{S} is in the middle age.", "{S} looks middle-aged, in {his} forties."),
    (
        "{S} looks like an elderly.",
        "{S} is an elderly person.",
        "{S} looks very old.",
        "{S} is in {his} seventies.",
    ),
)
_BEARD_PHRASES = (
    (
        "{S} doesn't have any beard at all.",
        "{S} doesn't have any mustache at all.",
        "{S} has no beard.",
        "{His} face is clean shaven.",
        "{S} doesn't have any beard.",
    ),
    (
        "{S} has some stubble on {his} face.",
        "{His} face is covered with short stubble.",
        "{S} has a very short beard, just stubble.",
        "There is a bit of stubble on {his} chin and jaw.",
    ),
    (
        "The face is covered with short pointed beard.",
        "{S} has a short beard.",
        "{S} has beard of medium length.",
        "{S} has a neat short beard and a mustache.",
    ),
    (
        "{S} has a long thick beard.",
        "{His} face is covered with a very long beard.",
        "{S} has a big bushy beard.",
        "The face is covered with a long full beard.",
    ),
)
_NO_BEARD_WOMAN = ("{S} doesn't have any beard.", "{S} doesn't have any beard at all.", "{S} has no beard.")
_FLAG_PHRASES = {  # key -> (sentences when absent, sentences when present)
    "Bangs": (
        ("{S} has no bangs at all.", "{His} forehead is not covered by any bangs."),
        ("{S} has bangs.", "{S} has bangs covering {his} forehead.", "{His} forehead is covered by bangs."),
    ),
    "Eyeglasses": (
        ("{S} doesn't wear any eyeglasses.", "There are no eyeglasses on {his} face."),
        ("{S} wears eyeglasses.", "{S} is wearing a pair of glasses.", "There are glasses on {his} face."),
    ),
    "Smiling": (
        ("{S} looks serious with no smile in {his} face.", "{S} is not smiling."),
        (
            "{S} is smiling happily with {his} mouth open.",
            "{S} has a big smile on {his} face.",
            "{S} is laughing with {his} teeth showing.",
        ),
    ),
}
_CAPTION_KEYS = ("Bangs", "Eyeglasses", "No_Beard", "Smiling", "Young")


def _sentence(rng: np.random.Generator, options: tuple[str, ...], gender: str) -> str:
    text = options[int(rng.integers(len(options)))]
    subject = _SUBJECTS[gender][int(rng.integers(len(_SUBJECTS[gender])))]
    he, his = _PRONOUNS[gender]
    return text.format(S=subject, he=he, his=his, His=his.capitalize())


def _captions(rng: np.random.Generator, att: dict[str, Any]) -> tuple[dict[str, str], str]:
    """One sentence per CelebA-Dialog key (a woman's beard sentence is empty half the time) and their join."""
    gender = att["gender"]
    caps = {
        key: _sentence(rng, _FLAG_PHRASES[key][int(att[flag])], gender)
        for key, flag in (("Bangs", "bangs"), ("Eyeglasses", "eyeglasses"), ("Smiling", "smiling"))
    }
    beard = _sentence(rng, _BEARD_PHRASES[att["beard"]] if gender == "man" else _NO_BEARD_WOMAN, gender)
    caps["No_Beard"] = beard if gender == "man" or rng.random() < 0.5 else ""
    caps["Young"] = _sentence(rng, _AGE_PHRASES[att["age"]], gender)
    overall = " ".join(caps[_CAPTION_KEYS[i]] for i in rng.permutation(5) if caps[_CAPTION_KEYS[i]])
    return {k: caps[k] for k in _CAPTION_KEYS}, overall
