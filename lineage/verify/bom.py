"""`lineage verify --format cyclonedx`: the outcomes as an ML-BOM (CycloneDX 1.6 JSON).

One component of type `machine-learning-model` per model checked. The base its weights derive from is its
`pedigree.ancestors` entry (CycloneDX's place for "what this component was derived from"), with a
`pkg:huggingface/org/name` purl when the reference has a hub id; the evidence (verdict, p-value,
distance, family) and the declaration check (outcome, what was declared, where) are `lineage:*`
properties, the namespace-prefixed form CycloneDX recommends for tool-specific data. A model derived from
no reference has no ancestors. A model that could not be read is a component too, `lineage:outcome` `error`
with the message as `lineage:error`: a BOM never drops a model. Each component's `bom-ref` is
`model:<name>:<path>` (names are unique in a run, so one path given twice still gets two refs). Built with
`cyclonedx-python-lib` (the `bom` extra), imported only here.
"""

from __future__ import annotations

from lineage import __version__
from lineage.decide.pvalues import p_value_text
from lineage.errors import MissingDependencyError
from lineage.verify.outcome import VerifyOutcome, VerifyResult

INSTALL_HINT = "the cyclonedx format needs cyclonedx-python-lib: pip install 'lineage[bom]'"
PROPERTY_PREFIX = "lineage:"


def to_cyclonedx(result: VerifyResult) -> str:
    """The CycloneDX 1.6 JSON document of a verify run.

    Args:
        result: what `lineage.jobs.verify.verify_paths` returned.

    Returns:
        The JSON text (validates against the CycloneDX 1.6 schema).

    Raises:
        MissingDependencyError: cyclonedx-python-lib is missing.

    Example:
        >>> text = to_cyclonedx(verify_paths(["suspects/"], "models_manifest.csv"))  # doctest: +SKIP
    """
    try:
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.output.json import JsonV1Dot6
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc

    bom = Bom(components=[_component(o, result.references) for o in result.outcomes])
    # Tools as components: CycloneDX 1.5 deprecated the old `tools` list.
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="lineage", version=__version__))
    return JsonV1Dot6(bom).output_as_string(indent=2)


def validate_cyclonedx(text: str) -> str | None:
    """Validate a CycloneDX 1.6 JSON document; returns the first error, None when valid.

    Raises:
        MissingDependencyError: cyclonedx-python-lib (with its json-validation extra) is missing.
    """
    try:
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    try:
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    except Exception as exc:  # noqa: BLE001 - the validator raises MissingOptionalDependencyException without jsonschema
        raise MissingDependencyError(f"{INSTALL_HINT} ({exc})") from exc
    return None if error is None else str(error)


def _component(o: VerifyOutcome, hub_ids: dict[str, str | None]):  # noqa: ANN202 - a cyclonedx Component
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component, ComponentType, Pedigree

    w = o.weights
    if w is None:  # the model could not be read: a component with its error
        props = {"outcome": o.status, "error": o.reason, "path": str(o.path)}
        return Component(
            type=ComponentType.MACHINE_LEARNING_MODEL, name=o.model, bom_ref=f"model:{o.model}:{o.path}",
            properties=_properties(Property, props),
        )  # fmt: skip
    props = {
        "outcome": o.status,
        "reason": o.reason,
        "declared": ";".join(o.declaration.bases),
        "declared_in": o.declaration.where,
        "relation": o.declaration.relation,
        "verdict": w.verdict,
        "family": w.family,
        "nearest": w.nearest,
        "distance": _num(w.distance),
        "p_value": _num(w.p_value),
        "p_value_text": p_value_text(w.p_value, w.log10_p),
        "path": str(o.path),
        "license": o.license,
        "inherited_license": o.inherited_license,
        "license_conflict": None if o.license_conflict is None else str(o.license_conflict).lower(),
    }
    ancestors = []
    if w.derived_from:
        evidence = {"verdict": w.verdict, "p_value": _num(w.p_value), "distance": _num(w.distance)}
        ancestors.append(
            Component(
                type=ComponentType.MACHINE_LEARNING_MODEL,
                name=w.derived_from,
                purl=_purl(hub_ids.get(w.derived_from)),
                properties=_properties(Property, evidence),
            )
        )
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=o.model,
        bom_ref=f"model:{o.model}:{o.path}",
        pedigree=Pedigree(ancestors=ancestors) if ancestors else None,
        properties=_properties(Property, props),
    )


def _properties(cls, values: dict[str, str | None]) -> list:  # noqa: ANN001
    return [cls(name=PROPERTY_PREFIX + k, value=str(v)) for k, v in values.items() if v not in (None, "")]


def _purl(hub_id: str | None):  # noqa: ANN202 - a PackageURL or None
    if not hub_id or "/" not in hub_id:
        return None
    from packageurl import PackageURL  # a dependency of cyclonedx-python-lib

    from lineage.io.declared import normalize_hub_id

    namespace, name = normalize_hub_id(hub_id).split("/", 1)
    return PackageURL(type="huggingface", namespace=namespace, name=name)


def _num(value: float | None) -> str | None:
    return None if value is None else f"{value:.6g}"
