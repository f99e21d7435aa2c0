"""Size figures of the package: largest modules, longest functions, private imports.

Prints the figures docs/architecture.md records: the lines of the largest
modules, the longest functions (methods included, decorators and docstrings
counted, as a reader sees them) and every `keras.src` / `keras_hub.src` import
outside `keras_prompt/compat.py`, the one module allowed to reach into
keras' and keras-hub's internals.

    python scripts/module_stats.py [--root keras_prompt] [--modules 5] [--functions 10]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PRIVATE_PACKAGES = ("keras.src", "keras_hub.src")
COMPAT_MODULE = Path(__file__).resolve().parents[1] / "keras_prompt" / "compat.py"


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def module_lines(files: list[Path]) -> list[tuple[int, Path]]:
    sizes = [(len(p.read_text("utf-8").splitlines()), p) for p in files]
    return sorted(sizes, key=lambda item: (-item[0], str(item[1])))


def function_lengths(files: list[Path]) -> list[tuple[int, str]]:
    lengths = []
    for path in files:
        tree = ast.parse(path.read_text("utf-8"))
        for node, qualname in _functions(tree, ""):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lengths.append((node.end_lineno - first + 1, f"{path}:{qualname}"))
    return sorted(lengths, key=lambda item: (-item[0], item[1]))


def _functions(node: ast.AST, prefix: str):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{child.name}"
            yield child, name
            yield from _functions(child, f"{name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")


def private_imports(files: list[Path]) -> list[str]:
    """`file:line module` of every keras/keras-hub internal import outside compat."""
    found = []
    for path in files:
        if path.resolve() == COMPAT_MODULE.resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if any(name == p or name.startswith(p + ".") for p in PRIVATE_PACKAGES):
                    found.append(f"{path}:{node.lineno} {name}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="keras_prompt")
    parser.add_argument("--modules", type=int, default=5)
    parser.add_argument("--functions", type=int, default=10)
    args = parser.parse_args(argv)
    files = python_files(Path(args.root))
    print(f"largest modules (lines), {len(files)} files:")
    for lines, path in module_lines(files)[: args.modules]:
        print(f"  {lines:5d}  {path}")
    print("longest functions (lines):")
    for lines, name in function_lengths(files)[: args.functions]:
        print(f"  {lines:5d}  {name}")
    imports = private_imports(files)
    print(f"keras.src / keras_hub.src imports outside compat.py: {len(imports)}")
    for line in imports:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
