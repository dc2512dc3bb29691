#!/usr/bin/env python3
"""Regenerate the TF-TRT supported-op table from a TensorFlow source tree you point it at.

Reads the converter registrations under ``tensorflow/compiler/tf2tensorrt/convert/``
(``REGISTER_DEFAULT_TRT_OP_CONVERTER`` in ``convert_nodes.cc`` and ``ops/*.cc``) and,
for each registered op type, the converter name, source line, TensorRT version guard
and the dtypes the converter accepts (``AllowDataTypes`` calls and ``OpConverterBase``
constructor lists). It vendors no TensorFlow code: it only reads text from the tree
given with ``--tf-source``.

The per-op rules that cannot be read mechanically (which inputs must be constants,
implicit-batch limits, attribute checks) are curated by hand in the shipped table;
``--merge-into`` keeps them and refreshes the extracted fields, and reports op types
that appeared or disappeared so a person reviews them.

Usage:
    python tools/extract_tftrt_op_table.py --tf-source /path/to/tensorflow \
        --merge-into tftrt_toolkit/analysis/tensorrt_plan/data/tftrt_supported_ops_tf2.17.json
    python tools/extract_tftrt_op_table.py --tf-source /path/to/tensorflow --check \
        --merge-into tftrt_toolkit/analysis/tensorrt_plan/data/tftrt_supported_ops_tf2.17.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

CONVERT_DIR = Path("tensorflow/compiler/tf2tensorrt/convert")
REGISTER_MACRO = "REGISTER_DEFAULT_TRT_OP_CONVERTER("

# TF DataType enum names -> the dtype names the toolkit prints (numpy/tf.dtypes style).
DTYPE_NAMES = {
    "DT_FLOAT": "float32",
    "DT_HALF": "float16",
    "DT_INT32": "int32",
    "DT_INT8": "int8",
    "DT_UINT8": "uint8",
    "DT_BOOL": "bool",
    "DT_INT64": "int64",
    "DT_DOUBLE": "float64",
}
# OpConverterBase's constructor default when a converter passes no dtype list.
DEFAULT_CONVERTER_DTYPES = ["float32", "float16"]

_TRT_GUARD = re.compile(r"#\s*if\s+IS_TRT_VERSION_GE\((\d+),\s*(\d+),\s*(\d+),\s*(\d+)\)")
_DTYPE = re.compile(r"\b(?:DataType::)?(DT_[A-Z0-9]+)\b")


@dataclasses.dataclass(frozen=True)
class Registration:
    """One op type registered with a converter, as read from the source text."""

    op_type: str
    converter: str
    source: str  # "relative/path.cc:line"
    trt_version_guard: Optional[str]  # e.g. "8.2.0.0" when registered only for TensorRT >= 8.2
    dtypes: Optional[List[str]]  # None when the converter checks no dtype attribute
    dtype_attr: Optional[str]


def _matching_paren(text: str, open_index: int) -> int:
    """Index of the ')' closing the '(' at open_index, skipping string literals."""
    depth = 0
    in_string = False
    i = open_index
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced parentheses after offset {open_index}")


def _split_top_level(args: str) -> List[str]:
    """Split a macro argument list at commas outside (), {}, [] and <>."""
    parts, depth, start, in_string = [], 0, 0, False
    for i, ch in enumerate(args):
        if in_string:
            if ch == '"' and args[i - 1] != "\\":
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "({[<":
            depth += 1
        elif ch in ")}]" or (ch == ">" and args[i - 1] != "-"):
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
    parts.append(args[start:].strip())
    return parts


def _strip_comments(text: str) -> str:
    # Keep line structure so line numbers stay right.
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _guard_at(text: str, offset: int) -> Optional[str]:
    """The innermost open `#if IS_TRT_VERSION_GE(...)` at offset, as "a.b.c.d"."""
    stack: List[Optional[str]] = []
    for line in text[:offset].splitlines():
        stripped = line.strip()
        match = _TRT_GUARD.match(stripped)
        if match:
            stack.append(".".join(match.groups()))
        elif stripped.startswith("#if"):
            stack.append(None)
        elif stripped.startswith("#endif") and stack:
            stack.pop()
    for guard in reversed(stack):
        if guard:
            return guard
    return None


def _map_entries(texts: Dict[Path, str], map_function: str) -> List[Tuple[str, Optional[str]]]:
    """Op names (and their TRT guards) from a `const XMapType* XMap() { ... }` definition."""
    pattern = re.compile(r"\*\s*" + re.escape(map_function) + r"\(\)\s*\{")
    for text in texts.values():
        match = pattern.search(text)
        if not match:
            continue
        body_start = match.end()
        body_end = text.index("return", body_start)
        entries = []
        for entry in re.finditer(r'\{\s*"([A-Za-z0-9_]+)"\s*,', text[body_start:body_end]):
            guard = _guard_at(text[body_start:body_end], entry.start())
            entries.append((entry.group(1), guard))
        return entries
    raise ValueError(f"cannot find the definition of {map_function}() in the converter sources")


def _op_names(names_expr: str, texts: Dict[Path, str]) -> List[Tuple[str, Optional[str]]]:
    names_expr = names_expr.strip()
    literal = re.fullmatch(r'"([^"]+)"', names_expr)
    if literal:
        return [(literal.group(1), None)]
    if names_expr.startswith("{"):
        return [(name, None) for name in re.findall(r'"([^"]+)"', names_expr)]
    via_map = re.fullmatch(r"GetOperationNames\(\s*\*\s*([A-Za-z0-9_]+)\(\)\s*\)", names_expr)
    if via_map:
        return _map_entries(texts, via_map.group(1))
    raise ValueError(f"unrecognised op-name expression in a registration: {names_expr!r}")


def _converter_name(converter_expr: str) -> str:
    made = re.fullmatch(r"MakeConverterFunction<\s*(.+?)\s*>\(\)", converter_expr.strip())
    return made.group(1) if made else converter_expr.strip()


def _function_body(text: str, function: str) -> Optional[str]:
    match = re.search(r"(?:^|\n)(?:Status|StatusOr<[^>]*>)\s+" + re.escape(function) + r"\s*\(", text)
    if not match:
        return None
    brace = text.index("{", match.end())
    return text[brace:_matching_paren(text, brace) + 1]


def _class_body(text: str, class_name: str) -> Optional[str]:
    base = class_name.split("<")[0]
    match = re.search(r"(?:^|\n)class\s+" + re.escape(base) + r"\b[^;{]*\{", text)
    if not match:
        return None
    brace = match.end() - 1
    return text[brace:_matching_paren(text, brace) + 1]


def _dtypes_in(expr: str) -> List[str]:
    return sorted({DTYPE_NAMES.get(name, name) for name in _DTYPE.findall(expr)})


def _function_dtypes(texts: Dict[Path, str], function: str, depth: int = 0) -> Tuple[Optional[List[str]], str]:
    """dtypes from the first AllowDataTypes call in a function (following one helper call)."""
    for text in texts.values():
        body = _function_body(text, function)
        if body is None:
            continue
        for call in re.finditer(r"AllowDataTypes\(", body):
            args = _split_top_level(body[call.end():_matching_paren(body, call.end() - 1)])
            types_expr = args[1]
            attr = "T"
            if len(args) > 2:
                attr_match = re.search(r'"([^"]+)"', args[2])
                attr = attr_match.group(1) if attr_match else attr
            if not _DTYPE.search(types_expr):
                # A named set, e.g. `std::set<DataType> allowed_types{...}` declared above.
                declared = re.search(re.escape(types_expr.strip()) + r"\s*\{([^}]*)\}", body)
                types_expr = declared.group(1) if declared else ""
            if attr in ("T", "Tparams"):
                return _dtypes_in(types_expr), attr
        if depth == 0:
            helper = re.search(r"\b(Convert[A-Za-z0-9]*Helper)\(", body)
            if helper:
                return _function_dtypes(texts, helper.group(1), depth + 1)
        return None, "T"
    return None, "T"


def _class_dtypes(texts: Dict[Path, str], class_name: str) -> Tuple[Optional[List[str]], Optional[str]]:
    base = class_name.split("<")[0]
    for text in texts.values():
        body = _class_body(text, base)
        if body is None:
            continue
        attr: Optional[str] = "T"
        attr_match = re.search(r"NodeDefDataTypeAttributeName\(\)\s*\{.*?return\s+\"([^\"]*)\"", body, re.S)
        if attr_match:
            attr = attr_match.group(1) or None
        if attr is None:
            return None, None
        ctor = re.search(r"OpConverterBase<[^>]*(?:<[^>]*>)?[^>]*>\s*\(", body)
        dtypes = list(DEFAULT_CONVERTER_DTYPES)
        if ctor:
            args = _split_top_level(body[ctor.end():_matching_paren(body, ctor.end() - 1)])
            if len(args) > 1 and _DTYPE.search(args[1]):
                dtypes = _dtypes_in(args[1])
            else:
                # The constructor may forward a dtype list given by a template base class.
                inherited = re.search(r"public\s+(Convert[A-Za-z0-9]*Base)\b", text[text.find("class " + base):])
                if inherited and inherited.group(1) != base:
                    return _class_dtypes(texts, inherited.group(1))
        else:
            # Converters deriving from a shared base (e.g. ConvertFillBase) inherit its list.
            parent = re.search(r"class\s+" + re.escape(base) + r"\s*:\s*public\s+([A-Za-z0-9_]+)", text)
            if parent and parent.group(1) != base:
                return _class_dtypes(texts, parent.group(1))
        return dtypes, attr
    return None, None


def read_sources(tf_source: Path) -> Dict[Path, str]:
    convert_dir = tf_source / CONVERT_DIR
    if not convert_dir.is_dir():
        raise SystemExit(f"{convert_dir} does not exist: --tf-source must be the root of a TensorFlow checkout")
    files = sorted(convert_dir.glob("*.cc")) + sorted((convert_dir / "ops").glob("*.cc"))
    return {
        path.relative_to(tf_source / "tensorflow/compiler/tf2tensorrt"): _strip_comments(
            path.read_text(encoding="utf-8").replace("\r\n", "\n"))
        for path in files
        if not path.name.endswith("_test.cc")
    }


def extract_registrations(texts: Dict[Path, str]) -> List[Registration]:
    """Every op type registered with a converter, in source order."""
    registrations: List[Registration] = []
    for relative_path, text in texts.items():
        for match in re.finditer(re.escape(REGISTER_MACRO), text):
            if text[:match.start()].rstrip().endswith("#define"):
                continue
            close = _matching_paren(text, match.end() - 1)
            converter_expr, names_expr = _split_top_level(text[match.end():close])
            converter = _converter_name(converter_expr)
            line = text.count("\n", 0, match.start()) + 1
            registration_guard = _guard_at(text, match.start())
            is_function = any(_function_body(t, converter) is not None for t in texts.values())
            if is_function:
                dtypes, attr = _function_dtypes(texts, converter)
            else:
                dtypes, attr = _class_dtypes(texts, converter)
            for op_type, name_guard in _op_names(names_expr, texts):
                registrations.append(Registration(
                    op_type=op_type,
                    converter=converter,
                    source=f"{relative_path.as_posix()}:{line}",
                    trt_version_guard=name_guard or registration_guard,
                    dtypes=dtypes,
                    dtype_attr=attr,
                ))
    return registrations


def merge(table: dict, registrations: Sequence[Registration]) -> Tuple[dict, List[str], List[str]]:
    """Refresh the extracted fields of `table["ops"]`, keeping the curated ones."""
    ops = table.setdefault("ops", {})
    seen = set()
    added = []
    for reg in registrations:
        seen.add(reg.op_type)
        entry = ops.get(reg.op_type)
        if entry is None:
            added.append(reg.op_type)
            entry = ops[reg.op_type] = {"notes": "added by extraction: review its rules"}
        entry["converter"] = reg.converter
        entry["source"] = reg.source
        entry["trt_version_guard"] = reg.trt_version_guard
        # Curated tables may narrow dtypes for a reason written in notes; extraction only fills gaps.
        entry.setdefault("dtypes", reg.dtypes)
        entry.setdefault("dtype_attr", reg.dtype_attr)
    removed = sorted(set(ops) - seen)
    return table, sorted(added), removed


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-source", type=Path, required=True, help="root of a TensorFlow source checkout")
    parser.add_argument("--merge-into", type=Path, help="an existing table whose curated rules are kept")
    parser.add_argument("--check", action="store_true",
                        help="only compare: exit 1 if the table's op types differ from the source's")
    args = parser.parse_args(argv)

    registrations = extract_registrations(read_sources(args.tf_source))
    if not args.merge_into:
        json.dump([dataclasses.asdict(r) for r in registrations], sys.stdout, indent=1)
        print()
        return 0
    table = json.loads(args.merge_into.read_text(encoding="utf-8"))
    before = json.dumps(table, sort_keys=True)
    table, added, removed = merge(table, registrations)
    for op_type in added:
        print(f"new op type in the source: {op_type}", file=sys.stderr)
    for op_type in removed:
        print(f"op type in the table but not registered in the source: {op_type}", file=sys.stderr)
    if args.check:
        return 1 if (added or removed) else 0
    if json.dumps(table, sort_keys=True) != before:
        args.merge_into.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
