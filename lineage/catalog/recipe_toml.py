"""Reading a recipe file (`load_recipe`), and its TOML form: ``[catalog]``, ``[family.*]``, ``[[base]]``,
``[[outsider]]``, ``[[independent]]``, ``[[derivative]]`` and ``[mini]`` tables turned into a validated
`Recipe`.

Tables may come in any order in the file; entries are laid out roots first (bases, outsiders,
independents), then derivatives in file order, so a derivative must follow its parents. What a derivative
inherits is settled here: its family and root base from its first parent, its role (a derivative of an
independent model is independent too), continued pretraining's default length, SLERP's weights.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport has the same API
    import tomli as tomllib  # type: ignore[no-redef]

from lineage.catalog.architectures import Shape
from lineage.catalog.declare import Declaration, parse_declaration
from lineage.catalog.recipe import Entry, Family, Recipe, Settings
from lineage.errors import CatalogError


def parse_recipe(raw: dict[str, Any], path: Path) -> Recipe:
    """A recipe from its parsed TOML tables (``path`` is recorded for error messages).

    Raises:
        ValueError, KeyError, TypeError: an invalid table (`load_recipe` names the file).
    """
    settings = Settings(**raw.get("catalog", {}))
    families = {
        name: Family(name=name, tokenizer=f["tokenizer"], vocab=int(f["vocab"]), sources=tuple(f["sources"]),
                     seed=int(f["seed"]))
        for name, f in raw.get("family", {}).items()
    }
    entries: list[Entry] = []
    roots: dict[str, Entry] = {}
    names = _all_names(raw)
    for role, key in (("base", "base"), ("outsider", "outsider"), ("independent", "independent")):
        for b in raw.get(key, []):
            shape = Shape(**b["shape"])
            # Outsiders keep their tokenizer family here; the manifest reports them as OUTSIDER_FAMILY.
            if b["family"] not in families:
                raise ValueError(f"{b['name']}: unknown family {b['family']!r}")
            data = str(b.get("data", "")) if role == "independent" else ""
            e = Entry(name=b["name"], role=role, op=role, family=b["family"],
                      shape=shape, steps=int(b["steps"]), lr=float(b["lr"]), seed=int(b["seed"]),
                      layout=b.get("layout", "single"), dtype=b.get("dtype", "float32"), data=data,
                      declared=_declaration(b, role, names))
            entries.append(e)
            roots[e.name] = e
    for d in raw.get("derivative", []):
        parents = tuple(d["parents"]) if "parents" in d else (d["parent"],)
        for p in parents:
            if p not in roots:
                raise ValueError(f"{d['name']}: parent {p!r} must be declared before it")
        root = roots[parents[0]]
        base = root.name if root.role == "base" else root.base
        if any((roots[p].name if roots[p].role == "base" else roots[p].base) != base for p in parents):
            raise ValueError(f"{d['name']}: all parents must descend from the same base")
        if any((roots[p].role == "independent") != (root.role == "independent") for p in parents):
            raise ValueError(f"{d['name']}: parents must all be independent models or all descend from a base")
        if root.role == "outsider":
            raise ValueError(f"{d['name']}: outsiders have no derivatives in a catalog")
        # A model derived from an independent one is still derived from no reference.
        role = "independent" if root.role == "independent" else "derivative"
        params = dict(d.get("params", {}))
        if d["op"] == "continued_pretrain" and "steps" not in params:
            params["steps"] = roots[base].steps  # "as long as the base's own pretraining"
        weights = tuple(float(w) for w in d.get("weights", ()))
        if d["op"] == "merge_slerp":
            t = float(params.get("t", 0.5))
            weights = (1.0 - t, t)
        e = Entry(name=d["name"], role=role, op=d["op"], family=root.family, base=base,
                  parents=parents, weights=weights, params=MappingProxyType(params), seed=int(d.get("seed", 0)),
                  layout=d.get("layout", "single"), dtype=d.get("dtype", "float32"),
                  declared=_declaration(d, d["op"], names, parents))
        entries.append(e)
        roots[e.name] = e
    mini = raw.get("mini", {})
    return Recipe(settings=settings, families=MappingProxyType(families), entries=tuple(entries),
                  mini=tuple(mini.get("models", ())), mini_steps=int(mini.get("max_steps", 30)),
                  mini_chars=int(mini.get("max_chars", 200_000)), path=path)


def _all_names(raw: dict[str, Any]) -> frozenset[str]:
    return frozenset(str(t["name"]) for key in ("base", "outsider", "independent", "derivative")
                     for t in raw.get(key, []))


def _declaration(table: dict[str, Any], op: str, names: frozenset[str],
                 parents: tuple[str, ...] = ()) -> Declaration | None:
    """The entry's ``declare``/``relation`` keys as a `Declaration` (``None`` when it declares nothing)."""
    if "declare" not in table:
        if "relation" in table:
            raise ValueError(f"{table['name']}: 'relation' needs a 'declare' key")
        return None
    return parse_declaration(table["name"], table["declare"], table.get("relation"), op=op, parents=parents,
                             names=names)


def default_recipe_path() -> Path:
    """``catalog/recipe.toml`` at the top of the repository this package lives in."""
    return Path(__file__).resolve().parents[2] / "catalog" / "recipe.toml"


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Read and validate a recipe TOML file.

    Args:
        path: the recipe; defaults to ``catalog/recipe.toml`` of the repository.

    Returns:
        The validated `Recipe`, entries in declaration order (parents first).

    Raises:
        CatalogError: the file is missing or invalid; the message names the entry at fault.

    Example:
        >>> recipe = load_recipe()
        >>> recipe["llama-8b"].shape.hidden
        128
    """
    path = Path(path) if path is not None else default_recipe_path()
    if not path.is_file():
        raise CatalogError(f"{path}: recipe not found; pass --recipe with the path of a catalog recipe.toml")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return parse_recipe(raw, path)
    except (tomllib.TOMLDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CatalogError(f"{path}: invalid recipe: {exc}") from exc
