"""Render the sample pages that ship with ocrswarm (run once; the PNGs are committed).

Public-domain text (Lincoln, 1863; Darwin, 1859) set at 300 dpi with Pillow's built-in font,
so the README's first command has real pages to work on without any download.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PAGES = [
    [
        "Four score and seven years ago our fathers brought",
        "forth on this continent, a new nation, conceived in",
        "Liberty, and dedicated to the proposition that all",
        "men are created equal.",
        "",
        "Now we are engaged in a great civil war, testing",
        "whether that nation, or any nation so conceived and",
        "so dedicated, can long endure. We are met on a great",
        "battle-field of that war.",
    ],
    [
        "We have come to dedicate a portion of that field, as",
        "a final resting place for those who here gave their",
        "lives that that nation might live. It is altogether",
        "fitting and proper that we should do this.",
        "",
        "But, in a larger sense, we can not dedicate, we can",
        "not consecrate, we can not hallow this ground.",
    ],
    [
        "When on board H.M.S. Beagle, as naturalist, I was",
        "much struck with certain facts in the distribution",
        "of the inhabitants of South America, and in the",
        "geological relations of the present to the past",
        "inhabitants of that continent.",
        "",
        "These facts seemed to me to throw some light on the",
        "origin of species, that mystery of mysteries.",
    ],
]


def render(lines: list[str], path: Path) -> None:
    width, height, margin, size = 2480, 3508, 240, 56
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size)
    y = margin
    for line in lines:
        if line:
            draw.text((margin, y), line, fill=0, font=font)
        y += int(size * 1.7)
    image.save(path, dpi=(300, 300), optimize=True)


def main() -> None:
    folder = Path(__file__).parent / "pages"
    folder.mkdir(exist_ok=True)
    for number, lines in enumerate(PAGES, start=1):
        render(lines, folder / f"page_{number}.png")


if __name__ == "__main__":
    main()
