"""Which names a notebook's code cells bind and read, and so which cells a graded run can leave out safely."""

from __future__ import annotations

import ast
import symtable
from collections.abc import Sequence
from typing import NamedTuple

# A chapter cell tagged so is one the exercises do not need: grading leaves it out (`digitlab.grading`).
SKIP_TAG = "skip-when-graded"
# Names that reach a cell's namespace in ways a reading of the code cannot follow: if a kept cell reads one of
# them, every cell runs. (IPython's output history numbers cells, so leaving cells out changes it.)
DYNAMIC = {"globals", "locals", "vars", "eval", "exec", "get_ipython", "In", "Out", "_", "__", "___", "_i", "_ii",
           "_iii", "_oh", "_ih", "_dh"}


class CellNames(NamedTuple):
    """What a code cell binds and reads at its top level, and reads inside functions (when they are called)."""

    surely: set[str]   # names it binds whenever it runs without an error
    maybe: set[str]    # names it may bind (in a loop, a branch, a `with` or `try` too)
    reads: set[str]    # names it reads before binding them: from earlier cells
    late: set[str]     # names its functions, classes and comprehensions read: from earlier or later cells


def _nested_reads(table: symtable.SymbolTable) -> set[str]:
    """Module-level names read inside the functions, lambdas, classes and comprehensions of `table`."""
    reads = set()
    for child in table.get_children():
        reads |= {s.get_name() for s in child.get_symbols() if s.is_global() and s.is_referenced()}
        reads |= _nested_reads(child)
    return reads


def _simple(code: str, names: CellNames, bound: set[str]) -> None:
    """Add what one simple statement (or expression) binds and reads; its bindings join `bound`."""
    table = symtable.symtable(code, "<cell>", "exec")
    symbols = table.get_symbols()
    binds = {s.get_name() for s in symbols if s.is_assigned() or s.is_imported()}
    names.reads.update({s.get_name() for s in symbols if s.is_referenced()} - bound)
    names.late.update(_nested_reads(table))
    names.maybe.update(binds)
    bound.update(binds)


def _targets(node: ast.AST | None) -> set[str]:
    """The names a loop's, `with`'s or `except`'s target binds."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} if node is not None else set()


def _block(stmts: list[ast.stmt], names: CellNames, bound: set[str]) -> None:
    """Add what a block of statements binds and reads, in order; what it surely binds joins `bound`."""
    for stmt in stmts:
        if isinstance(stmt, ast.For | ast.AsyncFor):
            _simple(ast.unparse(stmt.iter), names, bound)
            names.maybe.update(_targets(stmt.target))
            _block(stmt.body, names, bound | _targets(stmt.target))
            _block(stmt.orelse, names, set(bound))
        elif isinstance(stmt, ast.If | ast.While):
            _simple(ast.unparse(stmt.test), names, bound)
            _block(stmt.body, names, set(bound))
            _block(stmt.orelse, names, set(bound))
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            inner = set(bound)
            for item in stmt.items:
                _simple(ast.unparse(item.context_expr), names, inner)
                names.maybe.update(_targets(item.optional_vars))
                inner |= _targets(item.optional_vars)
            _block(stmt.body, names, inner)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            _block(stmt.body, names, set(bound))
            for handler in stmt.handlers:
                names.maybe.update({handler.name} if handler.name else set())
                _block(handler.body, names, set(bound) | ({handler.name} if handler.name else set()))
            _block(stmt.orelse, names, set(bound))
            _block(stmt.finalbody, names, set(bound))
        elif isinstance(stmt, ast.Match):   # rare in a chapter: read as a whole, binding nothing for sure
            _simple(ast.unparse(stmt), names, set(bound))
        else:
            _simple(ast.unparse(stmt), names, bound)


def cell_names(source: str) -> CellNames | None:
    """The names a code cell binds and reads (IPython's magics turned into Python first); None if unreadable."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None
    names = CellNames(set(), set(), set(), set())
    _block(tree.body, names, names.surely)
    return names


def _breaking(names: list[CellNames | None], skip: list[bool]) -> set[int]:
    """The cells marked in `skip` whose leaving out could change what a kept cell finds under a name."""
    marked = {j for j, s in enumerate(skip) if s}
    if any(n is None for n in names):
        return marked
    breaking = set()
    for k, cell in enumerate(names):
        if skip[k]:
            continue
        if (cell.reads | cell.late) & DYNAMIC:
            return marked
        breaking |= {j for j in marked if cell.late & names[j].maybe}   # read whenever a function is called
        for name in cell.reads:
            sure_kept = [j for j in range(k) if not skip[j] and name in names[j].surely]
            start = sure_kept[-1] if sure_kept else 0
            breaking |= {j for j in marked if start <= j < k and name in names[j].maybe}
    return breaking


def cells_to_skip(sources: Sequence[str], skip: Sequence[bool]) -> list[bool]:
    """Of the cells marked in `skip`, those that can be left out: every kept cell then finds the names a full
    run gives it.

    For each name a kept cell reads, no cell left out may bind it after the last kept cell before the reader
    that surely binds it. A name read inside a function may be read whenever the function is called, so no
    cell left out may bind it at all. A cell needed so runs, and what it reads is needed in turn. Cells that
    cannot be parsed, or that read names Python or IPython fill in behind the code's back (`globals()`, the
    output history), make every cell run.
    """
    names = [cell_names(source) for source in sources]
    skip = list(skip)
    while breaking := _breaking(names, skip):
        for j in breaking:
            skip[j] = False
    return skip


def safe_to_skip(sources: Sequence[str], skip: Sequence[bool]) -> bool:
    """Whether every cell marked in `skip` can be left out (`cells_to_skip`)."""
    return cells_to_skip(sources, skip) == list(skip)
