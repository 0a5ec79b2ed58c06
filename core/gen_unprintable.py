"""Writes core/src/unprintable.rs: the non-ASCII code points that Python's
``str.isprintable()`` refuses (and ``repr()`` escapes), as ranges, from the
Unicode database of the Python that runs it. Run with the project's Python
(3.11) from the repository root: ``python3 core/gen_unprintable.py``."""

import unicodedata
from pathlib import Path

ranges: list[tuple[int, int]] = []
start = None
for cp in range(0x80, 0x110000):
    refused = not chr(cp).isprintable()
    if refused and start is None:
        start = cp
    elif not refused and start is not None:
        ranges.append((start, cp - 1))
        start = None
if start is not None:
    ranges.append((start, 0x10FFFF))

rows = "\n".join(f"    (0x{a:x}, 0x{b:x})," for a, b in ranges)
Path(__file__).with_name("src").joinpath("unprintable.rs").write_text(
    f"""//! The non-ASCII code points that Python's `str.isprintable()` refuses, and
//! `repr()` therefore escapes, as ranges of consecutive code points, from
//! Unicode {unicodedata.unidata_version} (Python 3.11's database). Written by
//! `core/gen_unprintable.py`; `tests/unit/test_core_decoder.py` checks both
//! ends of every range against the running Python.

pub const UNICODE_VERSION: &str = "{unicodedata.unidata_version}";

pub const UNPRINTABLE: [(u32, u32); {len(ranges)}] = [
{rows}
];

/// Whether Python prints `c` (U+0080 or above) as it is in a `repr()`.
pub fn printable(c: u32) -> bool {{
    UNPRINTABLE
        .binary_search_by(|&(lo, hi)| {{
            if hi < c {{
                std::cmp::Ordering::Less
            }} else if lo > c {{
                std::cmp::Ordering::Greater
            }} else {{
                std::cmp::Ordering::Equal
            }}
        }})
        .is_err()
}}
""",
    encoding="utf-8",
)
