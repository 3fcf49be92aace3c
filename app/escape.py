"""One escaping function per sink for user text (names, units, ids, values from a spec or a table).

Pure functions, no Streamlit or Plotly import. Each returns text that its sink shows literally:
- `markdown`: st.markdown, captions, alerts (Markdown + HTML + LaTeX + emoji / icon shortcodes + autolinks).
- `label`: widget labels, which are Markdown too but also the control's accessible name (escaped minimally).
- `plotly`: Plotly text, titles, ticks and hover (a subset of HTML, entities, and $…$ as LaTeX).
- `html`: the offline HTML report.
- `csv_cell`: a CSV cell a spreadsheet would otherwise run as a formula.
Common to all: bidi override / isolate controls (which can reorder the text around a name) and other control
characters are dropped; right-to-left letters themselves are kept.
"""
from __future__ import annotations

import html as _html
import re
import unicodedata

WJ = "\u2060"      # WORD JOINER: invisible and unbreakable; splits a pattern that a Markdown plugin would act on
_CONTROLS = re.compile("[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u202a-\u202e\u2066-\u2069]")
_NEWLINES = re.compile(r"[\t\r\n\u2028\u2029\u0085]+")

# Markdown: every character with a meaning in CommonMark/GFM, Streamlit's directives (:color[…]) and LaTeX ($).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&@])")
# Streamlit turns text nodes into emoji / Material icons (`:smile:`, `:material/home:`) and GFM links bare
# URLs, `www.` names and e-mail addresses *after* Markdown parsing, so a backslash does not stop them:
# a word joiner after ':' (before a word), after 'www' and after '@' does.
_PLUGIN = re.compile(r"(\\:)(?=\S)|(?i:(www))(?=\\\.)|(\\@)")
# A widget label: escape only where Markdown would act (an ordinary name stays exactly as it is).
_LABEL_SPECIAL = re.compile(r"[\\`*\[\]~$<>]|&(?=#?\w+;)|:(?=\S)|(?<!\w)_|_(?!\w)")
# A spreadsheet runs a cell as a formula when its first visible character is one of these (full-width forms
# included: Excel and LibreOffice fold them).
_FORMULA_START = frozenset("=+-@")


def _clean(text) -> str:
    """str(text) without bidi overrides and control characters; line breaks and tabs become one space."""
    return _CONTROLS.sub("", _NEWLINES.sub(" ", str(text)))


def markdown(text) -> str:
    """User text for a Markdown slot: backslash before every special character, a word joiner where a
    Streamlit plugin would still see a shortcode or a link. Shows exactly the text (joiners are invisible)."""
    s = _MD_SPECIAL.sub(r"\\\1", _clean(text))
    return _PLUGIN.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + WJ, s)


def label(text) -> str:
    """User text for a widget label: escaped only where Markdown would act, so 'Vital signs (day 3)' stays as
    it is (Streamlit also reads the label aloud as the control's accessible name); ':' before a word gets a
    word joiner too, since emoji / icon shortcodes are matched after the backslash is gone."""
    s = _LABEL_SPECIAL.sub(lambda m: "\\" + m.group(0), _clean(text))
    return s.replace("\\:", "\\:" + WJ)


def plotly(text) -> str:
    """User text for any Plotly string: '<', '>' and '&' as entities (no tag or entity of the user's is read),
    '$' as an entity (Plotly renders $…$ as LaTeX when MathJax is loaded)."""
    return _html.escape(_clean(text), quote=False).replace("$", "&#36;")


def html(text) -> str:
    """User text for the HTML report, inside an element or a quoted attribute."""
    return _html.escape(_clean(text), quote=True)


def csv_cell(value):
    """A CSV cell that no spreadsheet runs as a formula: text whose first visible character (after spaces,
    no-break spaces, line breaks; full-width forms folded) is = + - @, or that starts with a tab or a line
    break, gets a leading apostrophe. Non-text values pass unchanged."""
    if not isinstance(value, str) or not value:
        return value
    first = value.lstrip(" \t\r\n\u00a0\u2007\u202f\u3000\ufeff")[:1]
    if value[0] in "\t\r\n" or unicodedata.normalize("NFKC", first)[:1] in _FORMULA_START:
        return "'" + value
    return value
