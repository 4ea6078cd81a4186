"""Result pages of the docs site, generated at build time from the committed outputs.

Each committed report (figures/*.md, written by `tuning-energy compare|figures|suite` from the
stores; bench/RESULTS.md, rendered by `make bench` from bench/results.json) becomes a page under
results/, with the images it shows; nothing is typed here, so the site shows exactly the
numbers the files hold."""

from pathlib import Path
import re

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
PAGES = [  # (committed report, page, title in the nav)
    ("suite.md", "results/suite.md", "The suite of problems"),
    ("suite/compare.md", "results/suite/compare.md", "Suite: the default problem"),
    ("suite/compare-mnist1d.md", "results/suite/compare-mnist1d.md", "Suite: MNIST-1D"),
    ("suite/compare-hgb.md", "results/suite/compare-hgb.md", "Suite: HGB on digits"),
    ("compare.md", "results/compare.md", "Default problem: every strategy"),
    ("report.md", "results/paper.md", "The paper's RQ1 and RQ2 on digits"),
    ("envdemo/report.md", "results/envdemo.md", "Environments side by side"),
]

# (committed file, page, title): the figures' reports, and make bench's results
SOURCES = [(f"figures/{source}", page, title) for source, page, title in PAGES] + [
    ("bench/RESULTS.md", "results/benchmarks.md", "Benchmarks: the committed run")]

for source, page, title in SOURCES:
    path = ROOT / source
    if not path.exists():  # not committed yet: the page says how to make it
        with mkdocs_gen_files.open(page, "w") as out:
            out.write(f"# {title}\n\n`{source}` is not committed yet.\n")
        continue
    text = path.read_text()
    folder = path.parent
    for image in sorted(set(re.findall(r"\]\(([^)\s]+\.(?:png|svg))\)", text))):
        with mkdocs_gen_files.open(str(Path(page).parent / image), "wb") as out:
            out.write((folder / image).read_bytes())
    with mkdocs_gen_files.open(page, "w") as out:
        out.write(text)
    mkdocs_gen_files.set_edit_path(page, f"../{source}")

# The home page is the README, its links made relative to the site.
readme = (ROOT / "README.md").read_text()
readme = readme.replace("](docs/)", "](usage.md)").replace("](docs/", "](")
readme = readme.replace("](figures/compare.md)", "](results/compare.md)").replace(
    "](figures/suite.md)", "](results/suite.md)")
readme = re.sub(r"\[([^\]]+)\]\(examples/README\.md\)", r"`examples/README.md`", readme)
for image in sorted(set(re.findall(r"\]\((figures/[^)\s]+\.png)\)", readme))):
    with mkdocs_gen_files.open(image, "wb") as out:
        out.write((ROOT / image).read_bytes())
with mkdocs_gen_files.open("index.md", "w") as out:
    out.write(readme)
mkdocs_gen_files.set_edit_path("index.md", "../README.md")
