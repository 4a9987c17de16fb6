"""The auto mask's rule-based instruction parser: a table of PIE-Bench, MagicBrush and everyday phrasing."""

from __future__ import annotations

import pytest

from maskpix_desktop.core.automask import (
    ParsedInstruction,
    is_plural,
    parse_instruction,
    parser_hit,
    singular,
)

G = "global"
# (instruction, targets, action, new). PIE-Bench instructions (editing_instruction of mapping_file.json) are
# "Change/Make/Add/Remove/Let ... " sentences; MagicBrush's are chattier ("What if ...", "Have the ...",
# "the X should be Y", "Let's add ...", "Could you ...").
TABLE: list[tuple[str, tuple[str, ...], str, str | None]] = [
    # change: turn / change / make / convert the X into / to Y
    ("Turn the cat into a dog", ("cat",), "change", "dog"),
    ("Change the cat to a dog", ("cat",), "change", "dog"),
    ("convert the horse into a zebra", ("horse",), "change", "zebra"),
    ("Transform the bicycle into a motorcycle.", ("bicycle",), "change", "motorcycle"),
    ("turn the apples into oranges", ("apples",), "change", "oranges"),
    ("Change the man to a woman", ("man",), "change", "woman"),
    ("change the background to a beach", ("background",), "change", "beach"),
    ("change the sky to sunset", ("sky",), "change", "sunset"),
    # change: attributes (PIE-Bench types 4-7: content, pose, colour, material)
    ("make the car red", ("car",), "change", "red"),
    ("Make the color of the car red", ("car",), "change", "red"),
    ("change the color of the shirt to blue", ("shirt",), "change", "blue"),
    ("change the material of the table to marble", ("table",), "change", "marble"),
    ("Make the cat wooden", ("cat",), "change", "wooden"),
    ("change the pose of the cat to sitting", ("cat",), "change", "sitting"),
    ("Change the action of the man to running", ("man",), "change", "running"),
    ("Make the cat open its mouth", ("cat",), "change", "open its mouth"),
    ("make the frame of the painting golden", ("frame",), "change", "golden"),
    ("change the man's shirt to red", ("shirt",), "change", "red"),
    ("Change the hair of the woman to blonde", ("hair",), "change", "blonde"),
    ("dye the hair pink", ("hair",), "change", "pink"),
    ("make the car look vintage", ("car",), "change", "vintage"),
    ("make the sky cloudy", ("sky",), "change", "cloudy"),
    # replace the X with Y
    ("replace the apple with an orange", ("apple",), "change", "orange"),
    ("Replace the car in the street with a bus", ("car",), "change", "bus"),
    ("Swap the dog for a cat", ("dog",), "change", "cat"),
    # MagicBrush phrasing
    ("What if the cat was a dog?", ("cat",), "change", "dog"),
    ("the bus should be red", ("bus",), "change", "red"),
    ("the cake should be chocolate", ("cake",), "change", "chocolate"),
    ("the cat sitting on the bench becomes a tiger", ("cat",), "change", "tiger"),
    ("make the cat and the dog black", ("cat", "dog"), "change", "black"),
    ("make the two dogs cats", ("two dogs",), "change", "cats"),
    # pronouns -> person / people
    ("turn him into a robot", ("person",), "change", "robot"),
    ("make him older", ("person",), "change", "older"),
    ("make them dance", ("people",), "change", "dance"),
    # add Y to / on the X ; let the X wear Y ; give the X Y
    ("add a hat to the man", ("man",), "add", "hat"),
    ("Add flowers on the table", ("table",), "add", "flowers"),
    ("add a rainbow", (), "add", "rainbow"),
    ("Let's add a dog", (), "add", "dog"),
    ("put a hat on the dog", ("dog",), "add", "hat"),
    ("Put a bowl of fruit on the table", ("table",), "add", "bowl of fruit"),
    ("let the woman wear sunglasses", ("woman",), "add", "sunglasses"),
    ("Let the cat wear a crown", ("cat",), "add", "crown"),
    ("let him wear a hat", ("person",), "add", "hat"),
    ("Have the dog wear sunglasses", ("dog",), "add", "sunglasses"),
    ("The man should be wearing a hat", ("man",), "add", "hat"),
    ("give her a necklace", ("person",), "add", "necklace"),
    ("give the little girl a balloon", ("little girl",), "add", "balloon"),
    ("What if the man had a beard?", ("man",), "add", "beard"),
    ("the plate should have a pizza on it", ("plate",), "add", "pizza"),
    ("What if there was a boat on the lake?", ("lake",), "add", "boat"),
    ("there should be a moon in the sky", ("sky",), "add", "moon"),
    # remove / erase / delete the X
    ("remove the man", ("man",), "remove", None),
    ("Could you remove the lamp?", ("lamp",), "remove", None),
    ("erase the bird from the sky", ("bird",), "remove", None),
    ("delete the cars", ("cars",), "remove", None),
    ("get rid of the people in the background", ("people",), "remove", None),
    ("Remove the sunglasses from the woman's face", ("sunglasses",), "remove", None),
    ("Please take away the cup", ("cup",), "remove", None),
    # style, season, weather, time of day -> global
    ("make it winter", (), G, "winter"),
    ("make it snowy", (), G, "snowy"),
    ("Make it a sunny day", (), G, "sunny day"),
    ("Let it be a rainy day", (), G, "rainy day"),
    ("make it at night", (), G, "at night"),
    ("Change the weather to stormy", (), G, "stormy"),
    ("turn the photo into a Van Gogh painting", (), G, "van gogh painting"),
    ("make the image in the style of Monet", (), G, "in the style of monet"),
    ("change the style to watercolor", (), G, "watercolor"),
    ("Make it look like a painting", (), G, "painting"),
    ("Change the season to autumn", (), G, "autumn"),
    ("in the style of Van Gogh", (), G, "in the style of van gogh"),
]


def test_table_is_big_enough() -> None:
    assert len(TABLE) >= 40
    assert {a for _, _, a, _ in TABLE} == {"change", "add", "remove", "global"}


@pytest.mark.parametrize(("text", "targets", "action", "new"), TABLE, ids=[t[0][:40] for t in TABLE])
def test_parse_table(text: str, targets: tuple[str, ...], action: str, new: str | None) -> None:
    assert parse_instruction(text) == ParsedInstruction(targets, action, new)


def test_prompt_format_and_validation() -> None:
    assert parse_instruction("make the cat and the dog black").prompt == "cat. dog."
    assert parse_instruction("make it winter").prompt == ""
    assert parse_instruction("").action == "global"
    with pytest.raises(ValueError, match="action"):
        ParsedInstruction(("cat",), "paint")


@pytest.mark.parametrize(
    ("phrase", "plural"),
    [
        ("cat", False),
        ("cats", True),
        ("two dogs", True),
        ("people", True),
        ("glass", False),
        ("bus", False),
        ("all the apples", True),
        ("sheep", False),
        ("sunglasses", True),
        ("person", False),
    ],
)
def test_is_plural(phrase: str, plural: bool) -> None:
    assert is_plural(phrase) is plural


def test_singular_and_parser_hit() -> None:
    assert [singular(w) for w in ("cats", "boxes", "puppies", "people", "glass")] == [
        "cat",
        "box",
        "puppy",
        "person",
        "glass",
    ]
    turn = parse_instruction("Turn the cats into dogs")
    assert parser_hit(turn, "cat dog") is True
    assert parser_hit(turn, "horse") is False
    assert parser_hit(turn, "") is None
    assert parser_hit(parse_instruction("add a rainbow"), "rainbow") is True  # add: the new object counts
