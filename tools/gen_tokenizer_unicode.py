#!/usr/bin/env python3
# tools/gen_tokenizer_unicode.py — writes nodes/sd3/tokenizer_unicode_data.c, the Unicode
# tables of the SD3 tokenizers (docs/models.md, "Tokenizers").
#
# Run with Python 3.11 (unicodedata 14.0.0, the version the golden tokenizations used) and
# the `regex` module installed:
#     python3 tools/gen_tokenizer_unicode.py > nodes/sd3/tokenizer_unicode_data.c
#
# Tables (all sorted, searched by binary search in nodes/sd3/tokenizer_unicode.c):
#   class ranges   per code point: regex [\p{L}] and [\p{N}] (IGNORECASE, as the CLIP
#                  pre-tokenizer compiles them), "unmatched" (no alternative of that regex
#                  matches: under IGNORECASE [^\s\p{L}\p{N}] rejects U+0345 because its case
#                  variant iota is a letter, while [\p{L}] rejects it too, so findall skips
#                  it), category C* (deleted by CLIP cleaning),
#                  "space" (Zs, TAB, LF, CR), and the two properties Python's str.lower
#                  uses for the final sigma (cased, case-ignorable; measured on str.lower
#                  itself, so they are exactly what Python does).
#   lower          simple lowercase mappings of Python's str.lower (U+0130 is special-cased
#                  in C: it lowers to two code points).
#   ccc            canonical combining classes (non-zero only).
#   decomposition  full canonical decompositions (NFD of one code point), Hangul excluded.
#   composition    primary composites: pairs (a, b) -> c, composition exclusions removed.
#   decimal        code points of the digit zero of each run of decimal digits (Nd), for
#                  Python float() parsing in prompt weights.
import sys
import unicodedata

import regex

MAXCP = 0x110000
F_LETTER, F_NUMBER, F_DELETE, F_SPACE, F_CASED, F_IGNORABLE, F_UNMATCHED = 1, 2, 4, 8, 16, 32, 64

RE_L = regex.compile(r"[\p{L}]", regex.IGNORECASE)
RE_N = regex.compile(r"[\p{N}]", regex.IGNORECASE)
RE_OTHER = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
RE_SPACE = regex.compile(r"\s")


def sigma_flags(c):
    """Cased / case-ignorable as Python's final-sigma rule sees them (see header)."""
    if c == 0x3A3:
        return F_CASED
    ch = chr(c)
    alone = (ch + "\u03a3").lower()[-1]
    after_cased = ("A" + ch + "\u03a3").lower()[-1]
    if alone != after_cased:
        return F_IGNORABLE
    return F_CASED if alone == "\u03c2" else 0


def cp_flags(c):
    ch = chr(c)
    cat = unicodedata.category(ch)
    f = 0
    if c not in (0xD800,) and not (0xD800 <= c <= 0xDFFF):
        if RE_L.match(ch):
            f |= F_LETTER
        if RE_N.match(ch):
            f |= F_NUMBER
        if not (f & (F_LETTER | F_NUMBER)) and not RE_OTHER.match(ch) and not RE_SPACE.match(ch):
            f |= F_UNMATCHED
    if ch in "\t\n\r " or cat == "Zs":
        f |= F_SPACE
    elif cat.startswith("C") or c in (0, 0xFFFD):
        f |= F_DELETE
    if not (0xD800 <= c <= 0xDFFF):
        f |= sigma_flags(c)
    return f


def class_ranges():
    out, prev = [], None
    for c in range(MAXCP):
        f = cp_flags(c)
        if f != prev:
            out.append((c, f))
            prev = f
    return out


def lower_pairs():
    out = []
    for c in range(MAXCP):
        if 0xD800 <= c <= 0xDFFF or c == 0x130:
            continue
        lo = chr(c).lower()
        if lo != chr(c):
            assert len(lo) == 1, hex(c)
            out.append((c, ord(lo)))
    return out


def ccc_ranges():
    out = []
    for c in range(MAXCP):
        k = unicodedata.combining(chr(c))
        if k == 0:
            continue
        if out and out[-1][1] == c - 1 and out[-1][2] == k:
            out[-1] = (out[-1][0], c, k)
        else:
            out.append((c, c, k))
    return out


def is_hangul_syllable(c):
    return 0xAC00 <= c < 0xAC00 + 11172


def decompositions():
    out = []
    for c in range(MAXCP):
        if 0xD800 <= c <= 0xDFFF or is_hangul_syllable(c):
            continue
        d = unicodedata.normalize("NFD", chr(c))
        if d != chr(c):
            out.append((c, [ord(x) for x in d]))
    return out


def compositions():
    out = []
    for c in range(MAXCP):
        if 0xD800 <= c <= 0xDFFF or is_hangul_syllable(c):
            continue
        dec = unicodedata.decomposition(chr(c))
        if not dec or dec.startswith("<"):
            continue
        parts = [int(x, 16) for x in dec.split()]
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(c)) == chr(c):
            out.append((parts[0], parts[1], c))
    out.sort()
    return out


def decimal_zeros():
    zeros = []
    for c in range(MAXCP):
        if 0xD800 <= c <= 0xDFFF:
            continue
        if unicodedata.decimal(chr(c), -1) == 0:
            for k in range(10):
                assert unicodedata.decimal(chr(c + k), -1) == k, hex(c)
            zeros.append(c)
    return zeros


def emit_array(name, ctype, items, per_line):
    w = sys.stdout.write
    w(f"const {ctype} {name}[] = {{\n")
    for i in range(0, len(items), per_line):
        w("    " + " ".join(items[i:i + per_line]) + "\n")
    w("};\n")
    w(f"const size_t {name}_count = {len(items)};\n\n")


def main():
    w = sys.stdout.write
    w("/* nodes/sd3/tokenizer_unicode_data.c — GENERATED by tools/gen_tokenizer_unicode.py "
      "from\n * Python %s unicodedata %s and the regex module %s; do not edit.\n"
      " * The tables are described in that script and in nodes/sd3/tokenizer_internal.h. */\n"
      % (sys.version.split()[0], unicodedata.unidata_version, regex.__version__))
    w('#include "nodes/sd3/tokenizer_internal.h"\n\n/* clang-format off */\n')
    cls = class_ranges()
    emit_array("lm_tokenizer__class_ranges", "uint32_t",
               ["0x%06x%02x," % (c, f) for c, f in cls], 8)
    low = lower_pairs()
    emit_array("lm_tokenizer__lower_pairs", "uint32_t",
               ["0x%05x, 0x%05x," % p for p in low], 5)
    ccc = ccc_ranges()
    emit_array("lm_tokenizer__ccc_ranges", "uint32_t",
               ["0x%05x, 0x%05x, %3d," % r for r in ccc], 4)
    dec = decompositions()
    keys, offs, pool = [], [], []
    for c, parts in dec:
        keys.append("0x%05x," % c)
        offs.append("%d," % len(pool))
        pool.extend(parts)
    offs.append("%d," % len(pool))
    emit_array("lm_tokenizer__decomp_keys", "uint32_t", keys, 8)
    emit_array("lm_tokenizer__decomp_offsets", "uint16_t", offs, 12)
    emit_array("lm_tokenizer__decomp_pool", "uint32_t", ["0x%05x," % p for p in pool], 8)
    comp = compositions()
    emit_array("lm_tokenizer__comp_triples", "uint32_t",
               ["0x%05x, 0x%05x, 0x%05x," % t for t in comp], 3)
    emit_array("lm_tokenizer__decimal_zeros", "uint32_t",
               ["0x%05x," % z for z in decimal_zeros()], 8)
    w("/* clang-format on */\n")


if __name__ == "__main__":
    main()
