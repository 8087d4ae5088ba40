"""Put a real `keras-initlab compare` (`residual`, `transformer`) run into the README.

Usage (from the repository root, after a default run):

    keras-initlab compare --out /tmp/report
    python tools/readme_table.py /tmp/report          # rewrite README.md and the image
    python tools/readme_table.py /tmp/report --check  # exit 1 if README.md differs
    keras-initlab residual --out /tmp/residual
    python tools/readme_table.py /tmp/residual        # the residual section and its image
    keras-initlab transformer --out /tmp/transformer
    python tools/readme_table.py /tmp/transformer     # the transformer section and images

The tables between the ``<!-- compare-table:begin -->`` / ``<!-- compare-table:end -->``
markers and the ``<!-- width-table:begin -->`` / ``<!-- width-table:end -->`` markers of
README.md are replaced by the report's ``table.md`` and the finite-width table of its
``summary.md``; ``heatmap.png`` is copied to ``docs/images/compare_heatmap.png``. The report
must come from the default run (its ``results.json`` config is compared with
``CompareConfig()``), so the README always shows what `keras-initlab compare` prints.
A `keras-initlab residual` report (its ``results.json`` has ``runs``) fills the
``<!-- residual-table:begin -->`` block from its ``table.md`` and copies
``stream_profile.png`` to ``docs/images/residual_stream.png``, under the same rule
(``ResidualConfig()``). A `keras-initlab transformer` report (its config has ``heads``)
fills ``<!-- transformer-table:begin -->`` from its ``table.md`` and
``<!-- transformer-claims:begin -->`` from the claims of its ``summary.md``, and copies
``stream_profile.png`` and ``training_curves.png`` to ``docs/images/transformer_stream.png``
and ``docs/images/transformer_loss.png`` (``TransformerConfig()``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
IMAGE = ROOT / "docs" / "images" / "compare_heatmap.png"
BLOCKS = ("compare-table", "width-table")
RESIDUAL_IMAGE = ROOT / "docs" / "images" / "residual_stream.png"
RESIDUAL_BLOCK = "residual-table"
TRANSFORMER_IMAGES = {
    "stream_profile.png": ROOT / "docs" / "images" / "transformer_stream.png",
    "training_curves.png": ROOT / "docs" / "images" / "transformer_loss.png",
}


def _claims(summary: str) -> str:
    """The claim lines of a report's summary.md (the list under ``## Claims``)."""
    lines = summary.split("## Claims", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in lines.splitlines() if line.startswith("- "))


def _width_table(summary: str) -> str:
    """The Markdown finite-width table of a report's summary.md (the one with a width column)."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| width |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


def _replace(text: str, block: str, content: str) -> str:
    begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"README.md lacks the markers {begin} ... {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{content}\n{end}{tail}"


def _default_config_differs(results: dict, config: object) -> list[str]:
    expected = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(config).items()  # type: ignore[call-overload]
    }
    return [k for k, v in expected.items() if results["config"].get(k) != v]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="folder written by `keras-initlab compare`")
    parser.add_argument("--check", action="store_true", help="only compare, change nothing")
    args = parser.parse_args(argv)
    from keras_initlab.compare.config import CompareConfig
    from keras_initlab.compare.residual.config import ResidualConfig
    from keras_initlab.compare.transformer.config import TransformerConfig

    results = json.loads((args.report / "results.json").read_text())
    kind = (
        "transformer"
        if "heads" in results["config"]
        else "residual"
        if "runs" in results
        else "compare"
    )
    default = {
        "transformer": TransformerConfig,
        "residual": ResidualConfig,
        "compare": CompareConfig,
    }[kind]()
    differs = _default_config_differs(results, default)
    if differs:
        print(f"not a default run: {', '.join(differs)} differ", file=sys.stderr)
        return 2
    text = README.read_text()
    table = (args.report / "table.md").read_text().strip()
    summary = (args.report / "summary.md").read_text()
    if kind == "transformer":
        updated = _replace(text, "transformer-table", table)
        updated = _replace(updated, "transformer-claims", _claims(summary))
        images = {args.report / name: image for name, image in TRANSFORMER_IMAGES.items()}
    elif kind == "residual":
        updated = _replace(text, RESIDUAL_BLOCK, table)
        images = {args.report / "stream_profile.png": RESIDUAL_IMAGE}
    else:
        updated = _replace(text, BLOCKS[0], table)
        updated = _replace(updated, BLOCKS[1], _width_table(summary))
        images = {args.report / "heatmap.png": IMAGE}
    if args.check:
        if updated != text:
            print("README.md's tour differs from this report", file=sys.stderr)
            return 1
        return 0
    README.write_text(updated)
    for source, image in images.items():
        shutil.copyfile(source, image)
    names = ", ".join(str(image.relative_to(ROOT)) for image in images.values())
    print(f"README.md and {names} updated from {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
