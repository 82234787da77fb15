"""The search family's toolset: a search engine over the world's documents, and a reader.

* ``search(query, page)``: BM25 over titles and bodies (tantivy's query language: words,
  ``"exact phrases"``, ``AND``/``OR``, ``-word``; a syntax error never fails, what parses is
  searched; one that parses but cannot run, ``title:*``, is an error that says so),
  :data:`RESULTS_PER_PAGE` hits a page with each hit's title and first sentence.
* ``open_document(doc_id, page)``: one page (:data:`~toolgym.synth.search.corpus.PAGE`
  sentences) of a document.
* ``find_in_document(doc_id, text)``: the sentences of a document that contain ``text``
  (case-insensitive, NFC), with their pages; at most :data:`MAX_MATCHES`.
* ``submit(answer)``: the name that answers the question.

Every tool only reads (the world is shared by all episodes). Errors are observations that say
how to fix the call: a page past the end names the number of pages, an unknown id the range of
ids.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from toolgym.envs.strict import Page, Text
from toolgym.envs.tools import Tool, ToolError, as_tool, tool
from toolgym.synth.search.corpus import PAGE, doc_id
from toolgym.synth.search.index import MAX_HITS, QueryError
from toolgym.synth.search.world import SearchWorld

RESULTS_PER_PAGE = 10
MAX_MATCHES = 30
MAX_QUERY_CHARS = 500
_PREVIEW = 120


def _page_error(page: int, pages: int) -> ToolError:
    return ToolError(f"page {page} does not exist; there {'is 1 page' if pages == 1 else f'are {pages} pages'}")


#: A document id as the tools write it: ASCII digits, no leading zero, at most 18 of them (so
#: ``int`` never sees a superscript digit or a number too long to convert).
_DOC_ID = re.compile(r"doc-(0|[1-9][0-9]{0,17})")
#: The most characters of a bad id an error repeats.
_SHOWN = 40


def _doc(world: SearchWorld, ref: str) -> int:
    """The index of document ``ref`` (``"doc-<n>"``), or a ToolError naming the range."""
    n = len(world.corpus)
    m = _DOC_ID.fullmatch(ref.strip())
    if m is not None and int(m[1]) < n:
        return int(m[1])
    shown = ref if len(ref) <= _SHOWN else ref[: _SHOWN - 3] + "..."
    raise ToolError(f"no document {shown!r}; ids run from doc-0 to doc-{n - 1} (use the ids search returns)")


def _preview(line: str) -> str:
    return line if len(line) <= _PREVIEW else line[: _PREVIEW - 3] + "..."


@tool("read")
def search(world: SearchWorld, query: Text, page: Page = 1) -> dict[str, Any]:
    """Search the document collection (BM25 ranking, 10 results a page, at most 100 pages).

    Args:
        query: Words to look for; put a name in double quotes to match it as an exact phrase.
        page: Page of results (1-based).
    """
    if not query.strip():
        raise ToolError("the query is empty; give some words to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise ToolError(f"the query has {len(query)} characters; at most {MAX_QUERY_CHARS} are allowed")
    try:
        ids, total = world.index.search(query, page * RESULTS_PER_PAGE)
    except QueryError:
        raise ToolError(
            'this query cannot be run (a "field:*" term matches any value, which is not supported); '
            'search for words or "exact phrases"'
        ) from None
    pages = max(1, -(-min(total, MAX_HITS) // RESULTS_PER_PAGE))
    if page > pages:
        raise _page_error(page, pages)
    corpus = world.corpus
    hits = [
        {"doc_id": doc_id(i), "title": corpus.titles[i], "preview": _preview(corpus.sentences[i][0])}
        for i in ids[(page - 1) * RESULTS_PER_PAGE :]
    ]
    return {"query": query, "page": page, "pages": pages, "total": total, "results": hits}


@tool("read")
def open_document(world: SearchWorld, doc_id: Text, page: Page = 1) -> dict[str, Any]:
    """Read one page of a document (5 sentences a page).

    Args:
        doc_id: A document id as search returns it, e.g. "doc-42".
        page: Page of the document (1-based).
    """
    i = _doc(world, doc_id)
    lines = world.corpus.sentences[i]
    pages = max(1, -(-len(lines) // PAGE))
    if page > pages:
        raise _page_error(page, pages)
    text = " ".join(lines[(page - 1) * PAGE : page * PAGE])
    return {"doc_id": doc_id.strip(), "title": world.corpus.titles[i], "page": page, "pages": pages, "text": text}


@tool("read")
def find_in_document(world: SearchWorld, doc_id: Text, text: Text) -> dict[str, Any]:
    """Find the sentences of a document that contain a text (case-insensitive).

    Args:
        doc_id: A document id as search returns it, e.g. "doc-42".
        text: The text to look for, e.g. a name.
    """
    i = _doc(world, doc_id)
    needle = unicodedata.normalize("NFC", text).strip().casefold()
    if not needle:
        raise ToolError("the text to find is empty")
    found = [
        {"page": k // PAGE + 1, "sentence": line}
        for k, line in enumerate(world.corpus.sentences[i])
        if needle in line.casefold()
    ]
    return {"doc_id": doc_id.strip(), "text": text, "total": len(found), "matches": found[:MAX_MATCHES]}


@tool("read")  # submit changes no state; the env intercepts it and ends the episode
def submit(world: SearchWorld, answer: Text) -> str:
    """Submit the final answer; this ends the episode.

    Args:
        answer: The name that answers the question, as the documents spell it.
    """
    return "submitted"


TOOLS = (search, open_document, find_in_document, submit)


def toolset(tool_config: dict[str, Any]) -> list[Tool]:
    """The tools of a task (the same four for every task)."""
    return [as_tool(f) for f in TOOLS]


__all__ = ["MAX_MATCHES", "RESULTS_PER_PAGE", "TOOLS", "find_in_document", "open_document", "search", "toolset"]
