"""The static check, the sandbox's first layer: on the AST, before any code runs.

``check_source`` refuses imports outside ``ALLOWED_IMPORTS``, dunder and private names
and attributes, the ``FORBIDDEN_BUILTINS`` and the ``DENIED_ATTRIBUTES`` (numpy and scipy
file I/O, raw memory, ...); a rejected source never runs, and the reason names the line.
The server loads this module too (by path, see ``host._BOOTSTRAP``): its importer,
module views and guarded ``getattr`` apply the same lists at run time.
"""

from __future__ import annotations

import ast
import functools
from typing import Sequence

ENTRY_POINTS: tuple[str, ...] = ("estimate_batch", "estimate")

ALLOWED_IMPORTS: frozenset[str] = frozenset({
    "math", "statistics",
    "numpy", "numpy.random", "numpy.linalg", "numpy.fft", "numpy.polynomial",
    "scipy.stats", "scipy.special",
})

# Builtins that are neither callable nor nameable in sandboxed code. ``type`` and
# ``id`` are here because a class object plus an address is what raw-memory tricks
# with numpy need; ``getattr``/``hasattr`` are allowed only with a literal name.
FORBIDDEN_BUILTINS: frozenset[str] = frozenset({
    "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars",
    "setattr", "delattr", "input", "breakpoint", "help", "exit", "quit", "type", "id",
    "copyright", "credits", "license",
})

# Attribute names refused on any object, statically and at run time. Besides these,
# every name starting with "_" is refused (dunders and private internals alike).
DENIED_ATTRIBUTES: frozenset[str] = frozenset({
    # file I/O, pickling and printing of files in numpy and scipy
    "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "tofile", "fromregex", "memmap", "open_memmap", "dump", "dumps", "DataSource",
    "openfile", "fromtextfile", "recfromcsv", "recfromtxt", "info", "source", "lookfor",
    "show_config", "show_runtime", "test",
    # namespaces and tools that reach files, processes or raw memory
    "lib", "ctypeslib", "ctypes", "testing", "f2py", "distutils", "rec", "recarray",
    "as_strided", "LowLevelCallable", "resize", "mro",
    # modules that allowed modules import for themselves
    "os", "sys", "subprocess", "builtins", "importlib", "socket", "pickle", "shutil",
    "pathlib", "io", "signal", "inspect", "gc", "threading", "multiprocessing",
    "resource", "tempfile", "platform", "posix",
    # frames, code and generator internals: the classic road to a module's globals
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await",
    "ag_frame", "ag_code", "ag_await", "f_back", "f_globals", "f_locals", "f_builtins",
    "f_code", "f_trace", "tb_frame", "tb_next",
    # process calls, named so that a stray reference fails with a precise reason
    "system", "popen", "fork", "kill", "environ", "getenv",
})

# Dunder methods a class in sandboxed code may define. Array protocols
# (``__array_interface__`` and friends) are absent on purpose: they hand numpy raw
# pointers.
_SAFE_DUNDER_METHODS: frozenset[str] = frozenset({
    "__init__", "__call__", "__repr__", "__str__", "__len__", "__iter__", "__next__",
    "__getitem__", "__contains__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
    "__ge__", "__hash__", "__bool__",
})

MAX_SOURCE_CHARS = 100_000
_FILENAME = "<method>"


def check_source(source: str, entry_points: Sequence[str] = ENTRY_POINTS) -> str | None:
    """Return why ``source`` may not run, or None if it passes the static check.

    The check is the first line of defence and the one that gives the most precise
    reasons; the run-time layers catch what it cannot see.
    """
    if not isinstance(source, str):
        return f"source is {type(source).__name__}, expected str"
    return _analyse(source, tuple(entry_points))[0]


@functools.lru_cache(maxsize=1024)
def _analyse(source: str, entry_points: tuple[str, ...]) -> tuple[str | None, frozenset[str]]:
    """(reason or None, allowed modules it imports): one parse serves the check and the
    server's preloading, and a source judged again (a new batch of data) is not re-parsed."""
    if len(source) > MAX_SOURCE_CHARS:
        return f"source too long ({len(source)} characters, limit {MAX_SOURCE_CHARS})", frozenset()
    try:
        tree = ast.parse(source, _FILENAME)
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})", frozenset()
    except ValueError as exc:  # e.g. null bytes in the source
        return f"syntax error: {exc}", frozenset()
    checker = _Checker()
    checker.visit(tree)
    imports = frozenset(checker.imports)
    if checker.problems:
        (line, _), message = min(checker.problems, key=lambda problem: problem[0])
        return f"{message} (line {line})", imports
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    if not defined.intersection(entry_points):
        return "no top-level function named " + " or ".join(entry_points), imports
    return None, imports


def _imported_modules(source: str) -> frozenset[str]:
    """Allowed modules that ``source`` imports: the server preloads them."""
    if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS:
        return frozenset()
    return _analyse(source, ENTRY_POINTS)[1]


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _attribute_denied(name: str) -> bool:
    return name.startswith("_") or name in DENIED_ATTRIBUTES


class _Checker(ast.NodeVisitor):
    """Collects (line, message) for every construct outside what sandboxed code may use."""

    def __init__(self) -> None:
        self.problems: list[tuple[tuple[int, int], str]] = []   # ((line, end column), message)
        self.imports: set[str] = set()
        self.aliases: dict[str, str] = {}   # local name -> module (or module.attr) it stands for
        self.approved: set[int] = set()     # ids of nodes made legal by their context

    def flag(self, node: ast.AST, message: str) -> None:
        where = (getattr(node, "lineno", 0), getattr(node, "end_col_offset", 0) or 0)
        self.problems.append((where, message))

    def check_identifier(self, node: ast.AST, name: str | None) -> None:
        if name is not None and _is_dunder(name):
            self.flag(node, f"forbidden name '{name}'")

    # imports -------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                self.flag(node, f"forbidden import '{alias.name}'")
                continue
            self.imports.add(alias.name)
            self.check_identifier(node, alias.asname)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.aliases[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.flag(node, "relative import is not allowed")
            return
        for alias in node.names:
            qualified = f"{module}.{alias.name}"
            if alias.name == "*":
                self.flag(node, f"star import from '{module}' is not allowed")
                continue
            if qualified in ALLOWED_IMPORTS:
                self.imports.add(qualified)
            elif module in ALLOWED_IMPORTS:
                if _attribute_denied(alias.name) or alias.name == "ndarray":
                    self.flag(node, f"forbidden name '{qualified}'")
                    continue
                self.imports.add(module)
            else:
                parent = any(allowed.startswith(module + ".") for allowed in ALLOWED_IMPORTS)
                self.flag(node, f"forbidden import '{qualified if parent else module}'")
                continue
            self.check_identifier(node, alias.asname)
            self.aliases[alias.asname or alias.name] = qualified

    # names and attributes ----------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name in FORBIDDEN_BUILTINS:
            self.flag(node, f"forbidden builtin '{name}'")
        elif name in ("getattr", "hasattr") and id(node) not in self.approved:
            self.flag(node, f"{name} is allowed only when called with a literal attribute name")
        elif name == "ndarray" and id(node) not in self.approved:
            self.flag(node, "forbidden name 'ndarray' (allowed only inside isinstance/issubclass)")
        elif _is_dunder(name) and not (name == "__name__" and isinstance(node.ctx, ast.Load)):
            self.flag(node, f"forbidden name '{name}'")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        qualified = self.qualify(node)
        shown = qualified or name
        if name == "ndarray":
            if id(node) not in self.approved:
                self.flag(node, f"forbidden attribute '{shown}' (allowed only inside isinstance/issubclass)")
        elif _attribute_denied(name):
            self.flag(node, f"forbidden attribute '{shown}'")
        elif qualified and qualified.count(".") == 1 and qualified.startswith("scipy."):
            if qualified not in ALLOWED_IMPORTS:
                self.flag(node, f"forbidden attribute '{qualified}'")
        self.generic_visit(node)

    def qualify(self, node: ast.Attribute) -> str | None:
        """'numpy.load' for ``np.load`` after ``import numpy as np``; None if not rooted in an import."""
        parts: list[str] = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name) and current.id in self.aliases:
            return ".".join([self.aliases[current.id], *reversed(parts)])
        return None

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("getattr", "hasattr"):
            literal = node.args[1] if len(node.args) >= 2 else None
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                self.approved.add(id(func))
                if _attribute_denied(literal.value) or literal.value == "ndarray":
                    self.flag(node, f"forbidden attribute '{literal.value}'")
        if isinstance(func, ast.Name) and func.id in ("isinstance", "issubclass") and len(node.args) == 2:
            classes = node.args[1]
            for element in classes.elts if isinstance(classes, ast.Tuple) else [classes]:
                self.approved.add(id(element))
        for keyword in node.keywords:
            if keyword.arg in ("buffer", "buf"):
                self.flag(node, f"keyword argument '{keyword.arg}' is not allowed")
        self.generic_visit(node)

    # definitions and binding forms -----------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.check_identifier(node, node.name)
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.approved.add(id(statement))
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        method = id(node) in self.approved
        if _is_dunder(node.name) and not (method and node.name in _SAFE_DUNDER_METHODS):
            self.flag(node, f"forbidden name '{node.name}'")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arg(self, node: ast.arg) -> None:
        self.check_identifier(node, node.arg)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        self.check_identifier(node, node.arg)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self.check_identifier(node, node.name)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            self.check_identifier(node, name)

    visit_Nonlocal = visit_Global

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for name in node.kwd_attrs:   # `case C(attr=x)` reads x = subject.attr
            if _attribute_denied(name) or name == "ndarray":
                self.flag(node, f"forbidden attribute '{name}'")
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self.check_identifier(node, node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self.check_identifier(node, node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.check_identifier(node, node.rest)
        self.generic_visit(node)
