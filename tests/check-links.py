#!/usr/bin/env python3
"""Checks the links of README.md and docs/*.md.

Every link must stay inside the repository:
  - a relative link must name a file or folder that exists in the
    repository (and is not ignored by git, so it exists in a clone);
  - a #anchor must name a heading of the target Markdown file, with
    GitHub's anchor rules (lower case, punctuation dropped, spaces to
    hyphens, -1, -2 ... for repeated headings);
  - nothing may link outside the repository: no URL with a scheme
    (http:, https:, mailto:, ...), no //host link, no bare URL that GitHub
    would turn into a link, no path that climbs out of the repository.

Links are inline ([text](target), ![alt](target)), reference definitions
([label]: target), autolinks (<https://...>), HTML href/src attributes and
bare URLs in text; fenced code blocks and `code spans` are skipped.

Run by `make test` (stage "docs"): /usr/bin/python3 tests/check-links.py
Prints one line per broken link, FILE:LINE: reason, and exits 1 if any.
"""
import os
import re
import subprocess
import sys
import unicodedata
from urllib.parse import unquote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
REF_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:[ \t]*(<[^>]*>|\S+)", re.M)
AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\s]*)>")
HTML_ATTR = re.compile(r"""<[A-Za-z][^>]*?\b(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
HTML_ID = re.compile(r"""<[A-Za-z][^>]*?\b(?:id|name)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
BARE_URL = re.compile(r"(?<![^\s*_~(])(?:https?://|ftp://|www\.)[^\s<>)\]]+", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def strip_code_spans(text):
    """Blanks out `code spans` (which may cross lines), keeping newlines so
    that offsets still map to lines."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "`":
            j = i
            while j < len(text) and text[j] == "`":
                j += 1
            ticks = text[i:j]
            # the closer is a run of exactly as many backticks
            close = re.compile(r"(?<!`)" + ticks + r"(?!`)")
            m = close.search(text, j)
            if not m:
                out.append(ticks)
                i = j
                continue
            out.append(re.sub(r"[^\n]", " ", text[i:m.end()]))
            i = m.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def text_lines(path):
    """Yields (line number, line, in_fence) for a Markdown file."""
    fence = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            m = FENCE.match(line)
            if fence is None and m:
                fence = m.group(1)
                yield n, line, True
                continue
            if fence is not None:
                if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                        and line.strip() == m.group(1):
                    fence = None
                yield n, line, True
                continue
            yield n, line, False


def slug(text):
    """GitHub's anchor for a heading's text (github-slugger)."""
    # Rendered text: images and links keep their text, code keeps its content,
    # emphasis markers and HTML tags go.
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"!?\[([^\]]*)\]\[[^\]]*\]", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("`", "")
    text = re.sub(r"\*+", "", text)
    text = re.sub(r"(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])", "", text)
    text = text.strip().lower()
    keep = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or ch == " " or cat[0] in "LNM":
            keep.append("-" if ch == " " else ch)
    return "".join(keep)


_anchor_cache = {}


def anchors(path):
    """The set of anchors GitHub generates for a Markdown file."""
    if path in _anchor_cache:
        return _anchor_cache[path]
    found, seen = set(), {}
    prev = None
    for _, line, in_fence in text_lines(path):
        if in_fence:
            prev = None
            continue
        heading = None
        m = ATX.match(line)
        if m:
            heading = m.group(2) or ""
        elif prev is not None and prev.strip() and SETEXT.match(line) \
                and not ATX.match(prev) and not prev.lstrip().startswith(("-", "*", "+", ">", "|")):
            heading = prev.strip()
        if heading is not None:
            base = slug(heading)
            n = seen.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
        for a, b in HTML_ID.findall(line):
            found.add(a or b)
        prev = line
    _anchor_cache[path] = found
    return found


def ignored_by_git(path):
    try:
        r = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", "--", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return False
    return r.returncode == 0


def inline_targets(text):
    """(offset, target) of every [text](target) and ![alt](target)."""
    targets = []
    i = 0
    while True:
        i = text.find("](", i)
        if i == -1:
            return targets
        j = i + 2
        while j < len(text) and text[j] in " \t\n":
            j += 1
        if j < len(text) and text[j] == "<":
            end = text.find(">", j)
            if end == -1:
                i += 2
                continue
            targets.append((j, text[j + 1:end]))
            i = end
            continue
        depth, k = 0, j
        while k < len(text):
            c = text[k]
            if c == "\\":
                k += 2
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            elif c in " \t\n" and depth == 0:
                break
            k += 1
        targets.append((j, text[j:k]))
        i = max(k, i + 2)


def check_target(src, lineno, target, errors):
    where = f"{os.path.relpath(src, ROOT)}:{lineno}"
    target = target.strip()
    if not target:
        errors.append(f"{where}: empty link target")
        return
    if target.startswith("//") or SCHEME.match(target):
        errors.append(f"{where}: link to outside the repository: {target}")
        return
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    if path_part.startswith("/"):
        dest = os.path.normpath(os.path.join(ROOT, path_part.lstrip("/")))
    elif path_part:
        dest = os.path.normpath(os.path.join(os.path.dirname(src), path_part))
    else:
        dest = src
    real_root = os.path.realpath(ROOT)
    real_dest = os.path.realpath(dest)
    if real_dest != real_root and not real_dest.startswith(real_root + os.sep):
        errors.append(f"{where}: link leaves the repository: {target}")
        return
    if not os.path.exists(dest):
        errors.append(f"{where}: no such file or folder: {target} "
                      f"(looked for {os.path.relpath(dest, ROOT)})")
        return
    rel = os.path.relpath(dest, ROOT)
    if rel != "." and (rel == ".git" or rel.startswith(".git" + os.sep) or ignored_by_git(rel)):
        errors.append(f"{where}: link to a path git does not track (ignored): {target}")
        return
    if anchor:
        if os.path.isdir(dest) or not dest.endswith((".md", ".markdown")):
            errors.append(f"{where}: #anchor on something that is not a Markdown file: {target}")
            return
        if unquote(anchor) not in anchors(dest):
            errors.append(f"{where}: no heading for anchor #{anchor} in "
                          f"{os.path.relpath(dest, ROOT)}: {target}")


def blocks(path):
    """(first line number, text) of each run of non-blank lines outside
    fenced code."""
    cur, first = [], None
    for lineno, line, in_fence in text_lines(path):
        if in_fence or not line.strip():
            if cur:
                yield first, "\n".join(cur)
            cur, first = [], None
            continue
        if first is None:
            first = lineno
        cur.append(line)
    if cur:
        yield first, "\n".join(cur)


def check_file(path, errors):
    for first, block in blocks(path):
        text = strip_code_spans(block)

        def line_of(offset):
            return first + text.count("\n", 0, offset)

        found = []
        for m in REF_DEF.finditer(text):
            target = m.group(2)
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append((m.start(2), target))
        found += inline_targets(text)
        found += [(m.start(1), m.group(1)) for m in AUTOLINK.finditer(text)]
        for m in HTML_ATTR.finditer(text):
            g = 1 if m.group(1) is not None else 2
            found.append((m.start(g), m.group(g)))
        found.sort()
        for offset, target in found:
            check_target(path, line_of(offset), target, errors)
        # bare URLs GitHub links by itself (those inside the links above are
        # blanked first)
        rest = list(text)
        for offset, target in found:
            for k in range(offset, min(offset + len(target), len(rest))):
                if rest[k] != "\n":
                    rest[k] = " "
        rest = "".join(rest)
        for m in BARE_URL.finditer(rest):
            errors.append(f"{os.path.relpath(path, ROOT)}:{line_of(m.start())}: bare URL "
                          f"(GitHub links it) to outside the repository: {m.group(0)} "
                          f"- put it in `code` or drop it")


def main():
    files = [os.path.join(ROOT, "README.md")]
    docs = os.path.join(ROOT, "docs")
    if os.path.isdir(docs):
        files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    errors = []
    for f in files:
        if not os.path.isfile(f):
            errors.append(f"{os.path.relpath(f, ROOT)}: missing")
            continue
        check_file(f, errors)
    for e in errors:
        print(e)
    if errors:
        print(f"check-links: {len(errors)} broken link(s) in {len(files)} file(s)")
        return 1
    print(f"check-links: {len(files)} files, every link resolves inside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
