"""English product vocabulary of the synthetic world.

Titles are built from these words so that a real pre-trained English text encoder (e.g.
all-MiniLM-L6-v2) sees the item semantics: the category noun carries the category, colour and
material words carry latent directions that images also show, brand names are made-up words
(as in real catalogues, their meaning is only learnable from data).
"""

# Category nouns with search synonyms (the first word is the entity label and the title noun).
CATEGORY_NOUNS = (
    ("sneakers", ("running shoes", "trainers")),
    ("pillowcase", ("pillow cover", "pillow slip")),
    ("coffee mug", ("cup", "tea mug")),
    ("backpack", ("rucksack", "school bag")),
    ("t-shirt", ("tee", "tshirt")),
    ("headphones", ("earphones", "headset")),
    ("water bottle", ("flask", "drink bottle")),
    ("desk lamp", ("table lamp", "reading light")),
    ("wrist watch", ("watch", "timepiece")),
    ("sunglasses", ("shades", "sun glasses")),
    ("phone case", ("phone cover", "mobile case")),
    ("jeans", ("denim pants", "trousers")),
    ("dress", ("gown", "frock")),
    ("jacket", ("coat", "windbreaker")),
    ("handbag", ("purse", "tote bag")),
    ("wallet", ("billfold", "card holder")),
    ("frying pan", ("skillet", "fry pan")),
    ("cutting board", ("chopping board", "chopping block")),
    ("bath towel", ("towel", "beach towel")),
    ("bed sheet", ("sheet set", "fitted sheet")),
    ("yoga mat", ("exercise mat", "fitness mat")),
    ("dumbbell", ("hand weight", "free weight")),
    ("notebook", ("journal", "notepad")),
    ("ballpoint pen", ("pen", "ink pen")),
    ("keyboard", ("computer keyboard", "typing keyboard")),
    ("computer mouse", ("mouse", "wireless mouse")),
    ("bluetooth speaker", ("speaker", "portable speaker")),
    ("power bank", ("portable charger", "battery pack")),
    ("usb cable", ("charging cable", "charger cord")),
    ("teddy bear", ("plush toy", "stuffed animal")),
    ("building blocks", ("brick set", "construction toy")),
    ("lipstick", ("lip color", "lip stick")),
    ("face cream", ("moisturizer", "skin cream")),
    ("shampoo", ("hair wash", "hair shampoo")),
    ("toothbrush", ("tooth brush", "electric toothbrush")),
    ("dog collar", ("pet collar", "puppy collar")),
    ("cat bed", ("pet bed", "kitten bed")),
    ("plant pot", ("flower pot", "planter")),
    ("wall clock", ("clock", "kitchen clock")),
    ("picture frame", ("photo frame", "frame")),
    ("scarf", ("shawl", "neck scarf")),
    ("beanie hat", ("knit hat", "winter hat")),
    ("socks", ("ankle socks", "crew socks")),
    ("umbrella", ("rain umbrella", "parasol")),
    ("suitcase", ("luggage", "travel case")),
    ("bicycle helmet", ("bike helmet", "cycling helmet")),
    ("tennis racket", ("racquet", "tennis racquet")),
    ("football", ("soccer ball", "ball")),
    ("kitchen knife", ("chef knife", "knife")),
    ("lunch box", ("bento box", "food container")),
    ("candle", ("scented candle", "wax candle")),
    ("blanket", ("throw", "quilt")),
    ("sofa cushion", ("throw pillow", "cushion")),
    ("ceiling fan", ("fan", "electric fan")),
    ("air fryer", ("fryer", "oil free fryer")),
    ("blender", ("mixer", "smoothie maker")),
    ("kettle", ("electric kettle", "tea kettle")),
    ("rice cooker", ("cooker", "rice maker")),
    ("hair dryer", ("blow dryer", "hairdryer")),
    ("necklace", ("pendant", "chain necklace")),
)

# Qualifiers that make further categories when a scale needs more than the nouns above.
CATEGORY_QUALIFIERS = ("kids", "travel", "outdoor", "mini", "professional")

# Colour words with hue in degrees; saturation below LOW_SATURATION maps to the neutral colours.
COLOURS = (
    ("red", 0), ("orange", 30), ("yellow", 55), ("lime", 85), ("green", 125),
    ("teal", 165), ("cyan", 190), ("blue", 220), ("navy", 240), ("purple", 275),
    ("magenta", 305), ("pink", 335),
)
NEUTRAL_COLOURS = ("black", "grey", "white")
LOW_SATURATION = 0.25

MATERIALS = ("cotton", "leather", "steel", "wooden", "plastic", "ceramic", "wool", "glass",
             "silk", "bamboo")

SIZES = ("small", "medium", "large", "extra large")

STYLES = ("classic", "modern", "vintage", "sport", "slim", "premium", "eco-friendly",
          "lightweight", "waterproof", "portable", "minimalist", "luxury")

# Syllables for made-up brand names.
BRAND_ONSETS = ("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
                "br", "kr", "st", "tr", "pl")
BRAND_VOWELS = ("a", "e", "i", "o", "u", "ai", "io")
BRAND_CODAS = ("", "n", "r", "x", "s", "l", "k", "ta", "ra", "lo")


def category_names(n: int) -> list[tuple[str, tuple[str, ...]]]:
    """``n`` distinct (noun, synonyms) pairs; qualified nouns once the base list runs out."""
    out = list(CATEGORY_NOUNS[:n])
    for q in CATEGORY_QUALIFIERS:
        for noun, syns in CATEGORY_NOUNS:
            if len(out) >= n:
                return out
            out.append((f"{q} {noun}", tuple(f"{q} {s}" for s in syns)))
    if len(out) < n:
        raise ValueError(f"At most {len(out)} categories are available, asked for {n}")
    return out


def brand_names(n: int, rng) -> list[str]:
    """``n`` distinct pronounceable brand names, deterministic for ``rng``."""
    names, seen = [], set()
    while len(names) < n:
        parts = []
        for _ in range(rng.integers(2, 4)):
            parts.append(BRAND_ONSETS[rng.integers(len(BRAND_ONSETS))]
                         + BRAND_VOWELS[rng.integers(len(BRAND_VOWELS))])
        name = ("".join(parts) + BRAND_CODAS[rng.integers(len(BRAND_CODAS))]).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names
