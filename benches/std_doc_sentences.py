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

`--crates Cargo.lock` adds a second, disjoint source to reach 100k: the
doc comments (`///`, `//!`, outside code fences) of every crates.io package
that Cargo.lock pins, read from the `.crate` archives in cargo's registry
cache (`cargo fetch` fills it). Their distinct sentences that the Rust docs
do not already hold are shuffled with the same seed into `more.json`, which
vectors.py appends to base.json's vectors; the first two files are the same
as without the flag, so their embeddings stay valid. `--corpus N` keeps
only as many as bring the corpus to N sentences (Cargo.lock at the time of
writing gives 127,466; 18,965 of them make 100,000):

    python3 benches/std_doc_sentences.py RUST_DOCS /tmp/realvec --crates Cargo.lock --corpus 100000
    target/release/examples/embed_speed $M /tmp/realvec/more.json /tmp/realvec/more.f32
"""

import json
import os
import random
import re
import sys
import tarfile
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
            split_sentences(paragraph, seen, out)
    return out


def split_sentences(paragraph, seen, out):
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())):
        if 40 <= len(sentence) <= 300 and sentence not in seen:
            seen.add(sentence)
            out.append(sentence)


def doc_comment_paragraphs(source):
    """Runs of `///` or `//!` lines, broken at blank doc lines, headings and
    code fences; the lines inside a fence are code, not prose."""
    paragraph, in_fence = [], False
    for line in source.splitlines():
        doc = re.match(r"\s*//[/!]\s?(.*)$", line)
        text = doc.group(1).strip() if doc else ""
        fence = text.startswith("```")
        if fence:
            in_fence = not in_fence
        if not doc or fence or in_fence or not text or text.startswith("#"):
            if paragraph:
                yield " ".join(paragraph)
                paragraph = []
            if not doc:
                in_fence = False
            continue
        paragraph.append(text)
    if paragraph:
        yield " ".join(paragraph)


def crate_sentences(lockfile, seen):
    """Sentences of the doc comments of the crates.io packages `lockfile` pins."""
    lock = open(lockfile, encoding="utf-8").read()
    packages = sorted(set(re.findall(
        r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"\nsource = "registry', lock)))
    cache = os.path.join(os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")), "registry", "cache")
    out, missing = [], []
    for name, version in packages:
        archives = sorted(
            os.path.join(cache, index, f"{name}-{version}.crate")
            for index in os.listdir(cache)
            if os.path.exists(os.path.join(cache, index, f"{name}-{version}.crate")))
        if not archives:
            missing.append(f"{name}-{version}")
            continue
        with tarfile.open(archives[0]) as archive:
            members = sorted((m for m in archive.getmembers() if m.isfile() and m.name.endswith(".rs")),
                             key=lambda m: m.name)
            for member in members:
                source = archive.extractfile(member).read().decode("utf-8", errors="replace")
                for paragraph in doc_comment_paragraphs(source):
                    split_sentences(paragraph, seen, out)
    print(f"{len(packages) - len(missing)} of {len(packages)} locked crates read"
          f"{'; not in the cache: ' + ', '.join(missing) if missing else ''}", file=sys.stderr)
    return out


def main():
    args = sys.argv[1:]
    lockfile, corpus = None, None
    if "--crates" in args:
        at = args.index("--crates")
        lockfile = args[at + 1]
        del args[at:at + 2]
    if "--corpus" in args:
        at = args.index("--corpus")
        corpus = int(args[at + 1])
        del args[at:at + 2]
    root, out = args
    os.makedirs(out, exist_ok=True)
    found = sentences(root)
    seen = set(found)
    random.Random(7).shuffle(found)
    with open(os.path.join(out, "queries.json"), "w") as f:
        json.dump(found[:200], f)
    with open(os.path.join(out, "base.json"), "w") as f:
        json.dump(found[200:], f)
    print(f"{len(found)} sentences: 200 queries, {len(found) - 200} in the corpus", file=sys.stderr)
    if lockfile:
        more = crate_sentences(lockfile, seen)
        random.Random(7).shuffle(more)
        if corpus is not None:
            more = more[:max(0, corpus - (len(found) - 200))]
        with open(os.path.join(out, "more.json"), "w") as f:
            json.dump(more, f)
        print(f"{len(more)} more sentences from the crates' doc comments", file=sys.stderr)


if __name__ == "__main__":
    main()
