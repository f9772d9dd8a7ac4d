"""The bibliography (lrpkit.references) and the cites in the code: author + year, never "paper 00N"."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from lrpkit.references import REFERENCES, SEED_PAPERS, Reference, cite, full_cite

ROOT = Path(__file__).resolve().parents[1]

#: A numbered cite ("paper 002", "papers 001, 002", "003 Alg. 1", "002's", "(003 ..."), written
#: in pieces so that this file does not match itself.
NUMBERED = re.compile(r"\b" + "paper" + r"s?\s*0\d\d\b"
                      r"|\b00[0-4]('s|:|,)? ?(alg|eq|fig|sec|table|app)\b"
                      r"|\b00[0-4]'s\b|\(00[0-4]\b", re.IGNORECASE)

#: "Samek et al. 2017", "Lapuschkin et al. (2016", "Lapuschkin et al. CVPR 2016",
#: "Zeiler & Fergus 2014", "Vedaldi and Fulkerson 2008".
CITE = re.compile(r"\b([A-Z][\w'\-]+)(?: et al\.| (?:&|and) ([A-Z][\w'\-]+)),? \(?(?:[A-Z]+ )?"
                  r"((?:19|20)\d\d)\b")


def _fold(name: str) -> str:
    """``"Sánchez"`` -> ``"sanchez"`` (ASCII, lower case)."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def _files(*parts: str, suffixes=(".py", ".ipynb", ".yaml", ".yml", ".md")) -> list[Path]:
    out = []
    for part in parts:
        path = ROOT / part
        found = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        out += [f for f in found if f.is_file() and f.suffix in suffixes
                and "__pycache__" not in f.parts and f.name != Path(__file__).name]
    return out


def test_numbered_pattern_catches_the_old_forms():
    for text in ["(paper 002: 100)", "Paper 000 App. E", "papers 001, 002", "paper 003",
                 "003 Alg. 1-3", "as 002's rule", "(003 Fig. 12)"]:
        assert NUMBERED.search(text), text
    for text in ["Samek et al. 2017, Fig. 4", "PAPER_002_METHODS", "0.002", "seed 2003",
                 "(100,000: the same fit)", "papermill 2.5"]:
        assert not NUMBERED.search(text), text


def test_no_numbered_paper_cites():
    files = _files("lrpkit", "notebooks", "configs", "tests", "benchmarks", "docs", "README.md")
    assert len(files) > 50
    hits = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}"
            for f in files for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            if NUMBERED.search(line)]
    assert not hits, "cite papers by author and year (lrpkit.references):\n" + "\n".join(hits)


def test_icip_2016_paper_is_cited_under_its_first_author():
    """The ICIP 2016 paper is Bach et al. 2016; "Lapuschkin et al. 2016" is the CVPR paper."""
    assert REFERENCES["bach2016controlling"].short == "Bach et al. 2016"
    assert "ICIP" in REFERENCES["bach2016controlling"].venue
    assert "Computer Vision and Pattern Recognition" in REFERENCES["lapuschkin2016analyzing"].venue
    wrong = re.compile(r"Lapuschkin et al\.,? \(?ICIP")
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in _files("lrpkit", "notebooks", "tests", "README.md")
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            if wrong.search(line)]
    assert not hits, hits


@pytest.mark.parametrize("key", list(REFERENCES))
def test_entry_is_well_formed(key):
    ref = REFERENCES[key]
    assert isinstance(ref, Reference) and ref.key == key
    assert ref.authors and all(re.fullmatch(r"(?:[A-Z][a-z]?\.[ -])+\S.*", a) for a in ref.authors), \
        ref.authors
    assert isinstance(ref.year, int) and 1990 <= ref.year <= 2030
    assert ref.title.strip() == ref.title and len(ref.title) > 10
    assert ref.venue.strip()
    # key: first author's surname (ASCII, no spaces / hyphens) + year + a word of the title
    first = re.sub(r"[^a-z]", "", _fold(ref.surnames[0]))
    assert re.fullmatch(rf"{first}{ref.year}[a-z]+", key), (key, first)
    assert key[len(first) + 4:] in re.sub(r"[^a-z]", "", _fold(ref.title))
    # short cite: "A 2015" / "A & B 2015" / "A et al. 2015", and cite() returns it
    n = len(ref.authors)
    want = {1: f"{ref.surnames[0]} {ref.year}",
            2: f"{ref.surnames[0]} & {ref.surnames[-1]} {ref.year}"}.get(
        n, f"{ref.surnames[0]} et al. {ref.year}")
    assert ref.short == want
    assert cite(key) == ref.short
    assert cite(key, "eq. 3") == f"{ref.short}, eq. 3"
    line = full_cite(key)
    assert ref.title in line and str(ref.year) in line and ref.authors[0] in line


def test_bibliography_as_a_whole():
    assert len(SEED_PAPERS) == 5
    assert [REFERENCES[k].short for k in SEED_PAPERS] == [
        "Lapuschkin et al. 2016", "Bach et al. 2016", "Samek et al. 2017", "Zhou & Kainz 2018",
        "Wagner et al. 2019"]
    shorts = [r.short for r in REFERENCES.values()]
    assert len(set(shorts)) == len(shorts), "two entries share a short cite"
    with pytest.raises(KeyError, match="samek2071evaluating"):
        cite("samek2071evaluating")


def _cites(files: list[Path]) -> list[tuple[str, str, str, str | None, int]]:
    out = []
    for f in files:
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for m in CITE.finditer(line):
                out.append((f"{f.relative_to(ROOT)}:{i}", m.group(0), m.group(1), m.group(2),
                            int(m.group(3))))
    return out


def test_every_author_year_cite_resolves():
    """Each "Xxx et al. YYYY" / "Xxx & Yyy YYYY" in lrpkit/, the notebooks and the README names a
    bibliography entry: first author's surname (and the second one's for two authors) and year."""
    known = {(_fold(r.surnames[0]), r.year): r for r in REFERENCES.values()}
    found = _cites(_files("lrpkit", "README.md") + _files("notebooks", suffixes=(".py",)))
    assert len(found) > 100
    missing = []
    for where, text, first, second, year in found:
        ref = known.get((_fold(first), year))
        if ref is None or (second and _fold(second) not in map(_fold, ref.surnames)):
            missing.append(f"{where}: {text}")
    assert not missing, "add these to lrpkit.references or fix the cite:\n" + "\n".join(missing)


def test_cite_pattern_finds_the_forms_in_use():
    text = ("(Samek et al. 2017, eq. 7); Lapuschkin et al. (2016, App. E); Lapuschkin et al. CVPR "
            "2016; Zeiler & Fergus 2014; Vedaldi and Fulkerson 2008; Rong et al., ICML 2022")
    got = [(m.group(1), m.group(3)) for m in CITE.finditer(text)]
    assert got == [("Samek", "2017"), ("Lapuschkin", "2016"), ("Lapuschkin", "2016"),
                   ("Zeiler", "2014"), ("Vedaldi", "2008"), ("Rong", "2022")]
