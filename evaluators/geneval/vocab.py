"""GenEval's vocabulary: the 80 COCO class names, colours, relations, number words, task tags.

Source: djghosh13/geneval prompts/create_prompts.py (templates, article and plural rules) and
prompts/object_names.txt (class order), copied to data/ so the package is self-contained.
"""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
OBJECT_NAMES_PATH = DATA_DIR / "object_names.txt"
EVALUATION_METADATA_PATH = DATA_DIR / "evaluation_metadata.jsonl"

CLASSES: tuple[str, ...] = tuple(
    line.strip() for line in OBJECT_NAMES_PATH.read_text().splitlines() if line.strip()
)
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
POSITIONS = ("left of", "right of", "above", "below")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# The six tasks in the order GenEval's generate_suite emits them.
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def with_article(name: str) -> str:
    """"an" when the word starts with a vowel letter (a, e, i, o, u), else "a" (GenEval's rule)."""
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def make_plural(name: str) -> str:
    """Add "es" when the name ends in "s", else "s" (GenEval's rule, e.g. "skis" -> "skises")."""
    return f"{name}es" if name[-1] == "s" else f"{name}s"
