#!/usr/bin/env python3
"""Writes the PDF fixtures the tests upload: real, valid PDF 1.4 files
(cross-reference table, Type1 Helvetica text, flate-compressed page
contents), made without any PDF library so the bytes are ours to explain.

    python3 scripts/make_pdf_fixtures.py tests/fixtures

- ownership.pdf: three pages of prose about Rust ownership, one topic each.
- flate_bomb.pdf: one page whose content stream inflates to 1 GiB of
  spaces (about 1 MB on disk).
"""
import sys
import zlib
from pathlib import Path


def pdf(pages, compress=True):
    """pages: list of content-stream bytes, one per page."""
    objects = []  # (number, bytes)
    font = 3
    objects.append((1, b"<< /Type /Catalog /Pages 2 0 R >>"))
    objects.append((font, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"))
    kids = []
    number = 4
    for content in pages:
        page, stream = number, number + 1
        number += 2
        kids.append(page)
        data = zlib.compress(content, 9) if compress else content
        filt = b" /Filter /FlateDecode" if compress else b""
        objects.append((page, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                        b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % stream))
        objects.append((stream, b"<< /Length %d%s >>\nstream\n" % (len(data), filt) + data + b"\nendstream"))
    objects.append((2, b"<< /Type /Pages /Kids [%s] /Count %d >>"
                    % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))))
    objects.sort()
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num, body in objects:
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    count = max(offsets) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    for num in range(1, count):
        out += b"%010d 00000 n \n" % offsets[num]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref)
    return bytes(out)


def text_page(lines):
    ops = [b"BT /F1 12 Tf 72 720 Td 16 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(b"(" + escaped.encode("cp1252") + b") Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops)


OWNERSHIP = [
    ["Ownership rules", "Each value in Rust has an owner.",
     "There can only be one owner at a time.",
     "When the owner goes out of scope, the value will be dropped."],
    ["References and borrowing", "A reference lets you refer to a value without taking ownership of it.",
     "At any given time you can have either one mutable reference",
     "or any number of immutable references."],
    ["The slice type", "Slices let you reference a contiguous sequence of elements",
     "in a collection rather than the whole collection.",
     "A string slice is a reference to part of a String."],
]


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ownership.pdf").write_bytes(pdf([text_page(p) for p in OWNERSHIP]))
    # 1 GiB of spaces behind a real page: the content stream is valid, only
    # far too large.
    spaces = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    data = b"".join(spaces.compress(chunk) for _ in range(1024)) + spaces.flush()
    bomb = pdf([b""], compress=False).replace(
        b"<< /Length 0 >>\nstream\n\nendstream",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream",
    )
    (out / "flate_bomb.pdf").write_bytes(bomb)


if __name__ == "__main__":
    main()
