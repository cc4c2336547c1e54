#!/usr/bin/env python3
"""Real text for the vector search benchmark: every distinct sentence of 40
to 300 characters in the paragraphs and list items of the Rust
documentation that rustup installs (the `rust-docs` component: std, core,
alloc, the books), shuffled with a fixed seed and split into 200 queries
and the rest as the corpus. Embedded with our MiniLM, they give
benches/vectors.py its `--real` vectors:

    python3 benches/std_doc_sentences.py ~/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/share/doc/rust/html /tmp/realvec
    M=~/.cache/rag-agent/models/all-MiniLM-L6-v2
    target/release/examples/embed_speed $M /tmp/realvec/queries.json /tmp/realvec/queries.f32
    target/release/examples/embed_speed $M /tmp/realvec/base.json /tmp/realvec/base.f32

Rust 1.95.0's docs give 81,235 sentences (81,035 in the corpus).
"""

import json
import os
import random
import re
import sys
from html.parser import HTMLParser


class Paragraphs(HTMLParser):
    """Collects the text of <p> and <li> elements."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.buffer = []
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag in ("p", "li"):
            self.depth += 1
            self.buffer = []

    def handle_endtag(self, tag):
        if tag in ("p", "li") and self.depth > 0:
            self.depth -= 1
            if self.depth == 0:
                self.found.append("".join(self.buffer))

    def handle_data(self, data):
        if self.depth > 0:
            self.buffer.append(data)


def sentences(root):
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".html"))
    seen, out = set(), []
    for path in files:
        parser = Paragraphs()
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                parser.feed(f.read())
        except Exception:  # a malformed page costs its sentences, not the run
            continue
        for paragraph in parser.found:
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())):
                if 40 <= len(sentence) <= 300 and sentence not in seen:
                    seen.add(sentence)
                    out.append(sentence)
    return out


def main():
    root, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    found = sentences(root)
    random.Random(7).shuffle(found)
    with open(os.path.join(out, "queries.json"), "w") as f:
        json.dump(found[:200], f)
    with open(os.path.join(out, "base.json"), "w") as f:
        json.dump(found[200:], f)
    print(f"{len(found)} sentences: 200 queries, {len(found) - 200} in the corpus", file=sys.stderr)


if __name__ == "__main__":
    main()
