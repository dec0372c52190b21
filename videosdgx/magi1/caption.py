"""The caption cleaning MAGI-1 applies before T5 (DeepFloyd IF's rules, run twice; magi1.md §4.6).

Lower-cases, drops URLs, HTML tags, @handles, CJK, ids, file names and shop boilerplate, unifies dashes and quotes,
and tidies punctuation and spaces. Two steps of the reference use third-party packages we do not depend on: HTML
is reduced to its text with the standard library's parser (as BeautifulSoup's `.text`), and `ftfy.fix_text`
(mojibake repair) is not applied — captions with broken encodings may tokenize differently.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from html.parser import HTMLParser

_URL_TLDS = r"[a-zA-Z0-9.\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\w/-]*\b\/?(?!@)"
_BAD_PUNCT = r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\\/\*]{1,}"
_DASHES = (r"[\u002D\u058A\u05BE\u1400\u1806\u2010-\u2015\u2E17\u2E1A\u2E3A\u2E3B\u2E40\u301C\u3030\u30A0"
           r"\uFE31\uFE32\uFE58\uFE63\uFF0D]+")
_CJK_BLOCKS = ("\u31c0-\u31ef", "\u31f0-\u31ff", "\u3200-\u32ff", "\u3300-\u33ff", "\u3400-\u4dbf", "\u4dc0-\u4dff",
               "\u4e00-\u9fff")

# (pattern, replacement) in the reference's order: before the HTML step, after it, and after the basic clean.
_BEFORE_HTML = [
    (r"<person>", "person"),
    (r"\b((?:https?:(?:\/{1,3}|[a-zA-Z0-9%])|" + _URL_TLDS + r"))", ""),
    (r"\b((?:www:(?:\/{1,3}|[a-zA-Z0-9%])|" + _URL_TLDS + r"))", ""),
]
_AFTER_HTML = [
    (r"@[\w\d]+\b", ""),
    *[(f"[{block}]+", "") for block in _CJK_BLOCKS],
    (_DASHES, "-"),
    (r"[`´«»“”¨]", '"'),
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),
    (r"\d:\d\d\s+$", ""),
    (r"\\n", " "),
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (r"[\S]+\.(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)", ""),
    (r"[\"\']{2,}", '"'),
    (r"[\.]{2,}", " "),
    (_BAD_PUNCT, " "),
    (r"\s+\.\s+", " "),
]
_AFTER_BASIC = [
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),
    (r"\b\d+[a-zA-Z]+\d+\b", ""),
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (r"\b(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", " "),
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),
    (r"\b\s+\:\s+", ": "),
    (r"(\D[,\./])\b", r"\1 "),
    (r"\s+", " "),
    (r"^[\"\']([\w\W]+)[\"\']$", r"\1"),
    (r"^[\'\_,\-\:;]", ""),
    (r"[\'\_,\-\:\-\+]$", ""),
    (r"^\.\S+$", ""),
]
_SEPARATORS = re.compile(r"(?:\-|\_)")


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html_text(text: str) -> str:
    parser = _Text()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def _apply(rules: list[tuple[str, str]], text: str) -> str:
    for pattern, replacement in rules:
        text = re.sub(pattern, replacement, text)
    return text


def _clean_once(caption: str) -> str:
    caption = urllib.parse.unquote_plus(str(caption)).strip().lower()
    caption = _html_text(_apply(_BEFORE_HTML, caption))
    caption = _apply(_AFTER_HTML, caption)
    if len(_SEPARATORS.findall(caption)) > 3:  # this-is-my-cute-cat
        caption = _SEPARATORS.sub(" ", caption)
    caption = html.unescape(html.unescape(caption)).strip()
    return _apply(_AFTER_BASIC, caption).strip()


def clean_caption(caption: str) -> str:
    """The reference's text preprocessing: the cleaning rules applied twice."""
    return _clean_once(_clean_once(caption))
