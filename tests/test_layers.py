"""The package is a house without circles: every import, at the top of a module or inside a function, goes down."""

import ast
import functools
import graphlib

from digitlab.settings import PROJECT_DIR

PACKAGE = PROJECT_DIR / "digitlab"


def imports_of(module: str) -> set[str]:
    """The digitlab modules that `module` imports anywhere in its source."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("digitlab"):
            if node.module == "digitlab":
                found |= {alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").exists()}
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("digitlab.")}
    return found - {module}


@functools.cache
def graph() -> dict[str, frozenset[str]]:
    """Every module of the package and the digitlab modules it imports."""
    return {path.stem: frozenset(imports_of(path.stem)) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def floors() -> dict[str, int]:
    """Each module's floor: 0 for one that imports no digitlab module, else one above the highest it imports."""
    imports = graph()
    floor = {}
    for module in graphlib.TopologicalSorter(imports).static_order():  # raises CycleError on a circle
        floor[module] = 1 + max((floor[m] for m in imports[module]), default=-1)
    return floor


def test_no_module_imports_a_module_that_imports_it_back():
    floor = floors()
    assert all(floor[m] < floor[module] for module, deps in graph().items() for m in deps)


def test_what_a_run_is_imports_nothing_but_the_errors():
    assert imports_of("config") == {"errors"}
    assert floors()["config"] <= 1


def test_the_layers_read_bottom_up():
    floor = floors()
    assert floor["errors"] == 0 and floor["settings"] == 1
    assert floor["data"] < floor["train"] < floor["checkpoints"] < floor["ablation"] < floor["stats"]
    assert floor["measure"] < floor["train"] and floor["measure"] < floor["speed"] < floor["bench"]
